"""Install the Python operators into ESA SNAP (10+), package them, check an installation.

``snap-pc snap install``
    copies the plugin folder (thin modules, ``-info.xml`` descriptors,
    ``META-INF/services``) to ``<user-dir>/snap-python/snap_progressive_classifier/``,
    where esa_snappy's ``PyOperatorSpi`` finds it, and the graphs to
    ``<user-dir>/graphs/Progressive Classifier/`` (Graph Builder's Graphs menu).
``snap-pc snap uninstall``
    removes exactly what ``install`` created.
``snap-pc snap nbm OUT.nbm``
    builds a NetBeans module that SNAP's plugin manager installs: the same
    Python files at the root of the module jar (SNAP puts module jars on its
    class path, where ``PyOperatorSpi`` also looks) plus menu actions under
    Raster > Progressive Classifier.
``snap-pc snap doctor``
    checks SNAP, esa_snappy, the Python SNAP uses, the plugin and the graphs,
    one line each, with the fix for each failure.

See ``docs/snap.md``.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..core import staging
from ..core.errors import SnapPcError
from ..core.outputs import write_bytes
from .descriptors import (
    PLUGIN_DIR,
    PLUGIN_OPERATORS,
    SERVICES_PATH,
    default_mode,
    operator_spec,
    stale,
)

#: Folder of the plugin below ``<user-dir>/snap-python``.
PLUGIN_FOLDER = "snap_progressive_classifier"
#: Folder of the graphs below ``<user-dir>/graphs`` (a submenu of Graph Builder's Graphs menu).
GRAPHS_FOLDER = "Progressive Classifier"
#: Marker written into each installed folder: proves we created it, and
#: which parent folders did not exist before (``uninstall`` removes them
#: again when empty).
MARKER = ".snap-pc-install.json"
#: Folder in the SNAP user folder where installs are staged (SNAP does not scan it).
STAGING = ".snap-pc-install"

#: NetBeans module code name of the NBM; its jar is ``<code name, dots as dashes>.jar``.
CODENAME = "io.github.snap_progressive_classifier"
MODULE_NAME = "Progressive Classifier"
#: Menu folder of the operator actions in SNAP Desktop.
MENU = ("Raster", "Progressive Classifier")
#: Modules the NBM needs: esa_snappy (``PyOperatorSpi``) and SNAP's GPF UI
#: (``DefaultOperatorAction``); NetBeans code names are Maven
#: ``groupId.artifactId`` with '-' as '.'.
MODULE_DEPENDENCIES = ("eu.esa.snap.esa.snappy", "org.esa.snap.snap.gpf.ui")

_REPO_GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


# --- files of the plugin and of the graphs ---------------------------------------------


def plugin_files(plugin_dir: str | os.PathLike = PLUGIN_DIR) -> dict[str, Path]:
    """Files SNAP needs from the plugin folder: relative POSIX path -> file.

    Raises
    ------
    SnapPcError
        When a plugin module is missing or the descriptors are stale.
    """
    plugin_dir = Path(plugin_dir)
    missing = [op.module + ".py" for op in PLUGIN_OPERATORS if not (plugin_dir / (op.module + ".py")).is_file()]
    if missing:
        raise SnapPcError(f"plugin module(s) missing from {plugin_dir}: {', '.join(missing)}")
    bad = stale(plugin_dir)
    if bad:
        raise SnapPcError(f"SNAP descriptors in {plugin_dir} are stale ({', '.join(bad)}); "
                          "run python -m snap_operators.snap.descriptors --write")
    files = {}
    for path in sorted(plugin_dir.rglob("*")):
        rel = path.relative_to(plugin_dir)
        if path.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts) \
                and path.suffix != ".pyc":
            files[rel.as_posix()] = path
    return files


def default_graphs_dir() -> Path | None:
    """The project's graphs: ``snap_operators/graphs`` when installed from a wheel, ``graphs/`` in a source checkout."""
    for cand in (Path(__file__).resolve().parents[1] / "graphs", _REPO_GRAPHS):
        if cand.is_dir() and any(cand.glob("*.xml")):
            return cand
    return None


def graph_files(graphs_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Graph XML files and their ``.properties``: file name -> path."""
    folder = Path(graphs_dir) if graphs_dir is not None else default_graphs_dir()
    if folder is None:
        raise SnapPcError("the project's graphs folder was not found; pass --graphs DIR")
    files = {p.name: p for p in sorted(folder.glob("*.xml")) + sorted(folder.glob("*.properties"))}
    if not any(n.endswith(".xml") for n in files):
        raise SnapPcError(f"no graph XML files in {folder}")
    return dict(sorted(files.items()))


# --- install / uninstall ----------------------------------------------------------------


def default_user_dir() -> Path:
    """SNAP's user folder, ``~/.snap``."""
    return Path.home() / ".snap"


@dataclass
class InstallResult:
    """Where ``install`` put things."""

    plugin_dir: Path
    graphs_dir: Path
    graphs: list[Path]


def install(user_dir: str | os.PathLike | None = None, graphs_dir: str | os.PathLike | None = None,
            plugin_dir: str | os.PathLike = PLUGIN_DIR) -> InstallResult:
    """Copy the plugin and the graphs into SNAP's user folder.

    Both folders are first written complete under temporary names, then
    renamed into place (a previous installation is replaced only then), so
    SNAP never sees a half-copied plugin.

    Parameters
    ----------
    user_dir : path, optional
        SNAP user folder (default ``~/.snap``).
    graphs_dir : path, optional
        Folder of the graphs to install (default: the project's ``graphs/``).
    plugin_dir : path
        Plugin folder to install (default: the package's).
    """
    user_dir = Path(user_dir).expanduser() if user_dir is not None else default_user_dir()
    pfiles = plugin_files(plugin_dir)
    gfiles = graph_files(graphs_dir)
    targets = [
        (user_dir / "snap-python", PLUGIN_FOLDER, pfiles),
        (user_dir / "graphs", GRAPHS_FOLDER, gfiles),
    ]
    for parent, name, _ in targets:
        _check_owned(parent / name)

    # Staged under the user folder, outside snap-python/ and graphs/: SNAP registers the operators of
    # every folder it finds in snap-python/, hidden ones included, so a half-done or interrupted
    # install there would be registered twice. Same file system, so the renames stay atomic.
    root = user_dir / STAGING
    staged: list[tuple[Path, Path]] = []
    try:
        for parent, name, files in targets:
            created = _missing_dirs(user_dir, parent)
            parent.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(root, parent, name)
            tmp = staging.staged_path(root / name, suffix="")
            tmp.mkdir(parents=True)
            staged.append((tmp, parent / name))
            os.chmod(tmp, default_mode(0o777))
            for rel, src in files.items():
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            created = sorted(set(created) | set(_marker(parent / name).get("created", [])), key=_depth)
            (tmp / MARKER).write_text(json.dumps({"tool": "snap-pc", "version": __version__,
                                                  "created": created}, indent=1), encoding="utf-8")
    except BaseException as exc:  # Ctrl-C and SIGTERM too: nothing half-copied may stay behind
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_if_empty(root)
        if isinstance(exc, OSError):
            raise SnapPcError(f"cannot install into {user_dir}: {exc.strerror or exc}") from None
        raise
    with staging.deferred_signals():  # both folders swap in, or (a signal before) neither
        for tmp, final in staged:
            _swap_in(tmp, final, root)
    _remove_if_empty(root)
    gdir = user_dir / "graphs" / GRAPHS_FOLDER
    return InstallResult(user_dir / "snap-python" / PLUGIN_FOLDER, gdir,
                         [gdir / n for n in gfiles if n.endswith(".xml")])


def uninstall(user_dir: str | os.PathLike | None = None) -> list[Path]:
    """Remove what :func:`install` created; returns the paths removed.

    Folders without our marker are left alone (one-line error).
    """
    user_dir = Path(user_dir).expanduser() if user_dir is not None else default_user_dir()
    folders = [user_dir / "snap-python" / PLUGIN_FOLDER, user_dir / "graphs" / GRAPHS_FOLDER]
    for folder in folders:
        _check_owned(folder)
    removed: list[Path] = []
    created: set[str] = set()
    for folder in folders:
        if folder.exists():
            created.update(_marker(folder).get("created", []))
            shutil.rmtree(folder)
            removed.append(folder)
    for rel in sorted(created, key=_depth):
        d = Path(os.path.normpath(user_dir.absolute() / rel))
        try:
            d.rmdir()  # only when empty: SNAP or the user may have put things there since
            removed.append(d)
        except OSError:
            pass
    return removed


def _missing_dirs(user_dir: Path, parent: Path) -> list[str]:
    """`parent` and those of its ancestors that do not exist yet, relative to `user_dir`, deepest first."""
    out = []
    d = parent.absolute()
    while not d.exists() and d.parent != d:
        out.append(os.path.relpath(d, user_dir.absolute()))
        d = d.parent
    return out


def _depth(rel: str) -> int:
    """Sort key putting deeper folders first ("a/b" before "a" before "." before "..")."""
    parts = Path(os.path.normpath(rel)).parts
    return -sum(1 if part != ".." else -1 for part in parts if part != ".")


def _marker(folder: Path) -> dict:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _check_owned(folder: Path) -> None:
    if folder.exists() and not (folder / MARKER).is_file():
        raise SnapPcError(f"{folder} exists and was not created by snap-pc snap install; move it away first")


def _swap_in(tmp: Path, final: Path, root: Path) -> None:
    old = None
    if final.exists():
        old = staging.staged_path(root / f"{final.name}.old", suffix="")
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(root: Path, parent: Path, name: str) -> None:
    """Folders a killed install left: staged ones of dead processes, and older versions' hidden
    ``.<name>.*`` folders beside the installed one (where SNAP would find them)."""
    staging.clean_stale([root])
    try:
        hidden = [p for p in parent.iterdir() if p.is_dir() and p.name.startswith(f".{name}.")]
    except OSError:
        return
    for p in hidden:
        shutil.rmtree(p, ignore_errors=True)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # not empty (another install), or not there
        pass


def gpt_commands(graphs: list[Path], gpt: str = "gpt") -> list[str]:
    """One example ``gpt`` command per graph: its ``.properties`` with ``-p``,
    a ``-P`` for each variable the properties leave open."""
    from ..engine.graph import load_properties, parse_graph

    out = []
    for g in graphs:
        props = g.with_suffix(".properties")
        defaults = load_properties(props) if props.is_file() else {}
        cmd = [gpt, str(g)]
        if props.is_file():
            cmd += ["-p", str(props)]
        variables = sorted(parse_graph(g).variables() - set(defaults))
        cmd = " ".join(shlex.quote(c) for c in cmd)
        out.append(cmd + "".join(f" -P{v}=..." for v in variables))
    return out


# --- NBM ------------------------------------------------------------------------------


def _dashed(codename: str) -> str:
    return codename.replace(".", "-")


def layer_xml(codename: str = CODENAME) -> str:
    """NetBeans layer: one SNAP operator dialog action per operator, in Raster > Progressive Classifier."""
    fs = ET.Element("filesystem")
    ops_folder = ET.SubElement(ET.SubElement(fs, "folder", name="Actions"), "folder", name="Operators")
    menu = ET.SubElement(fs, "folder", name="Menu")
    for name in MENU:
        menu = ET.SubElement(menu, "folder", name=name)
    for k, op in enumerate(PLUGIN_OPERATORS):
        spec = operator_spec(op.alias)
        title = spec.label or _words(op.alias)
        instance = f"{_dashed(codename)}-{op.alias}Action.instance"
        f = ET.SubElement(ops_folder, "file", name=instance)
        attrs = [
            ("instanceCreate", "methodvalue", "org.openide.awt.Actions.alwaysEnabled"),
            ("delegate", "methodvalue", "org.esa.snap.core.gpf.ui.DefaultOperatorAction.create"),
            ("operatorName", "stringvalue", op.alias),
            ("displayName", "stringvalue", title),
            ("dialogTitle", "stringvalue", title),
        ]
        if op.suffix:
            attrs.append(("targetProductNameSuffix", "stringvalue", op.suffix))
        attrs.append(("ShortDescription", "stringvalue", spec.description))
        for name, kind, value in attrs:
            ET.SubElement(f, "attr", {"name": name, kind: value})
        shadow = ET.SubElement(menu, "file", name=instance.replace(".instance", ".shadow"))
        ET.SubElement(shadow, "attr", name="originalFile", stringvalue=f"Actions/Operators/{instance}")
        ET.SubElement(shadow, "attr", name="position", intvalue=str(100 * (k + 1)))
    ET.indent(fs, space="    ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE filesystem PUBLIC "-//NetBeans//DTD Filesystem 1.2//EN" '
            '"http://www.netbeans.org/dtds/filesystem-1_2.dtd">\n'
            + ET.tostring(fs, encoding="unicode") + "\n")


def _words(alias: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", alias)


def nbm_version(version: str | None = None) -> str:
    """NetBeans specification version (digits and dots) from `version` or the package's."""
    v = version or __version__
    m = re.match(r"^(\d+(?:\.\d+)*)", v)
    if not m or (version is not None and m.group(1) != version):
        raise SnapPcError(f"--version {v!r}: expected digits and dots, e.g. 1.2.0")
    return m.group(1)


def _manifest(attrs: list[tuple[str, str]]) -> bytes:
    """Jar manifest text, lines wrapped at 72 bytes as the jar format requires."""
    out = bytearray()
    for key, value in attrs:
        line = f"{key}: {value}".encode()
        first = True
        while line:
            width = 72 if first else 71
            cut = width
            while cut < len(line) and (line[cut] & 0xC0) == 0x80:  # never split a UTF-8 sequence
                cut -= 1
            out += (b"" if first else b" ") + line[:cut] + b"\r\n"
            line = line[cut:]
            first = False
    return bytes(out + b"\r\n")


def _module_attrs(spec_version: str, codename: str) -> list[tuple[str, str]]:
    aliases = ", ".join(op.alias for op in PLUGIN_OPERATORS)
    return [
        ("Manifest-Version", "1.0"),
        ("OpenIDE-Module", codename),
        ("OpenIDE-Module-Specification-Version", spec_version),
        ("OpenIDE-Module-Implementation-Version", __version__),
        ("OpenIDE-Module-Name", MODULE_NAME),
        ("OpenIDE-Module-Display-Category", "SNAP"),
        ("OpenIDE-Module-Short-Description", f"Progressive land-cover classification as SNAP Python operators ({aliases})"),
        ("OpenIDE-Module-Long-Description",
         "<p>SNAP Python operators of snap-progressive-classifier: " + aliases + ". They run through esa_snappy "
         "with the Python configured for SNAP, which must have snap-progressive-classifier installed.</p>"),
        ("OpenIDE-Module-Layer", _layer_path(codename)),
        ("OpenIDE-Module-Public-Packages", "-"),
        ("OpenIDE-Module-Module-Dependencies", ", ".join(MODULE_DEPENDENCIES)),
        ("OpenIDE-Module-Java-Dependencies", "Java > 1.8"),
        ("OpenIDE-Module-Requires", "org.openide.modules.ModuleFormat1"),
        ("AutoUpdate-Show-In-Client", "true"),
    ]


def _layer_path(codename: str) -> str:
    return codename.replace(".", "/") + "/layer.xml"


def module_jar(spec_version: str, codename: str = CODENAME, plugin_dir: str | os.PathLike = PLUGIN_DIR) -> bytes:
    """The NetBeans module jar: manifest, layer, and the plugin files at the jar root
    (``PyOperatorSpi`` reads ``META-INF/services/...`` of every jar on SNAP's class path
    and adds the jar to Python's ``sys.path``, which imports modules from zip files)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/MANIFEST.MF", _manifest(_module_attrs(spec_version, codename)))
        z.writestr(_layer_path(codename), layer_xml(codename))
        for rel, path in plugin_files(plugin_dir).items():
            z.write(path, rel)
    return buf.getvalue()


def info_xml(spec_version: str, codename: str = CODENAME, nbm_name: str = "") -> str:
    """``Info/info.xml`` of the NBM (NetBeans autoupdate module info)."""
    module = ET.Element("module", {
        "codenamebase": codename,
        "distribution": nbm_name,
        "downloadsize": "0",
        "homepage": "https://github.com/snap-progressive-classifier/snap-progressive-classifier",
        "license": "MIT",
        "moduleauthor": "snap-progressive-classifier developers",
        "needsrestart": "true",
        "releasedate": _dt.date.today().strftime("%Y/%m/%d"),
    })
    attrs = dict(_module_attrs(spec_version, codename))
    attrs.pop("Manifest-Version")
    attrs.pop("OpenIDE-Module-Layer")
    ET.SubElement(module, "manifest", attrs)
    lic = ET.SubElement(module, "license", name="MIT")
    lic.text = "MIT License. See https://opensource.org/licenses/MIT"
    ET.indent(module, space="    ")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE module PUBLIC "-//NetBeans//DTD Autoupdate Module Info 2.5//EN" '
            '"http://www.netbeans.org/dtds/autoupdate-info-2_5.dtd">\n'
            + ET.tostring(module, encoding="unicode") + "\n")


def module_status_xml(codename: str = CODENAME) -> str:
    """``config/Modules/<name>.xml``: the module is a regular, enabled module."""
    jar = f"modules/{_dashed(codename)}.jar"
    params = [("autoload", "false"), ("eager", "false"), ("enabled", "true"), ("jar", jar), ("reloadable", "false")]
    body = "".join(f'    <param name="{k}">{v}</param>\n' for k, v in params)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE module PUBLIC "-//NetBeans//DTD Module Status 1.0//EN" '
            '"http://www.netbeans.org/dtds/module-status-1_0.dtd">\n'
            f'<module name="{codename}">\n{body}</module>\n')


def build_nbm(out: str | os.PathLike, version: str | None = None, plugin_dir: str | os.PathLike = PLUGIN_DIR,
              overwrite: bool = False) -> Path:
    """Write the NetBeans module file `out` (``.nbm``) for SNAP's plugin manager.

    Parameters
    ----------
    out : path
        Output file; written under a staged name and renamed
        (:func:`~snap_operators.core.outputs.write_bytes`).
    version : str, optional
        Module specification version, digits and dots (default: the package version).
    overwrite : bool
        Replace an existing `out` (refused otherwise, as ``snap-pc run`` refuses).
    """
    out = Path(out)
    spec_version = nbm_version(version)
    if out.suffix.lower() != ".nbm":
        raise SnapPcError(f"{out}: the file name must end with .nbm")
    if out.exists() and not overwrite:
        raise SnapPcError(f"{out} exists (use --overwrite to replace it)")
    if not out.parent.is_dir():
        raise SnapPcError(f"{out.parent}: folder does not exist")
    jar = module_jar(spec_version, CODENAME, plugin_dir)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Info/info.xml", info_xml(spec_version, CODENAME, out.name))
        z.writestr("META-INF/MANIFEST.MF", _manifest([("Manifest-Version", "1.0")]))
        z.writestr(f"netbeans/config/Modules/{_dashed(CODENAME)}.xml", module_status_xml(CODENAME))
        z.writestr(f"netbeans/modules/{_dashed(CODENAME)}.jar", jar)
    return write_bytes(out, buf.getvalue())


# --- doctor ---------------------------------------------------------------------------

#: Where SNAP's installers put it by default.
_SNAP_HOMES = ("~/esa-snap", "/opt/esa-snap", "/usr/local/esa-snap", "/Applications/esa-snap",
               "C:/Program Files/esa-snap", "~/snap")


@dataclass
class Check:
    """One doctor line."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        if self.ok:
            return f"OK    {self.name}: {self.detail}"
        return f"FAIL  {self.name}: {self.detail}. Fix: {self.fix}"


def gpt_path(snap_home: Path) -> Path | None:
    """``bin/gpt`` (``gpt.exe`` on Windows) of a SNAP installation, when present."""
    for name in ("gpt", "gpt.exe"):
        p = snap_home / "bin" / name
        if p.is_file():
            return p
    return None


def find_snap_home(snap_home: str | os.PathLike | None = None) -> Path | None:
    """`snap_home`, else ``$SNAP_HOME``, else the first default location or the one of ``gpt`` on PATH."""
    if snap_home is not None:
        return Path(snap_home).expanduser()
    if os.environ.get("SNAP_HOME"):
        return Path(os.environ["SNAP_HOME"]).expanduser()
    cands = [Path(p).expanduser() for p in _SNAP_HOMES]
    which = shutil.which("gpt")
    if which:
        cands.insert(0, Path(which).resolve().parent.parent)
    for c in cands:
        if gpt_path(c) is not None:
            return c
    return None


def snap_version(snap_home: Path) -> tuple[int, ...] | None:
    """SNAP version from ``VERSION.txt``, else from the snap-core module's manifest."""
    try:
        m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", (snap_home / "VERSION.txt").read_text(encoding="utf-8", errors="replace"))
        if m:
            return tuple(int(x) for x in m.groups() if x is not None)
    except OSError:
        pass
    jar = snap_home / "snap" / "modules" / "org-esa-snap-snap-core.jar"
    try:
        with zipfile.ZipFile(jar) as z:
            text = z.read("META-INF/MANIFEST.MF").decode("utf-8", "replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    m = re.search(r"OpenIDE-Module-Specification-Version:\s*(\d+)\.(\d+)(?:\.(\d+))?", text)
    return tuple(int(x) for x in m.groups() if x is not None) if m else None


def read_java_properties(path: Path) -> dict[str, str]:
    """A Java ``.properties`` file (``Properties.store`` escapes ``\\``, ``:``, ``=``)."""
    props = {}
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        m = re.match(r"((?:\\.|[^=:\s\\])+)\s*[=:\s]\s*(.*)$", line)
        if m:
            props[_unescape(m.group(1))] = _unescape(m.group(2))
    return props


def _unescape(s: str) -> str:
    def repl(m):
        c = m.group(1)
        if c.startswith("u"):
            return chr(int(c[1:], 16))
        return {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(c, c)
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", repl, s)


def python_settings(user_dir: Path, snap_home: Path | None) -> tuple[dict[str, str], list[Path]]:
    """esa_snappy's settings (``snap.pythonExecutable``, ``snap.pythonModuleDir``) and the files read.

    As esa_snappy's ``PyBridge``: ``<user-dir>/snap-python/snappy.properties``
    first, then SNAP's ``snap.properties`` (user, installation).
    """
    files = [user_dir / "snap-python" / "snappy.properties", user_dir / "etc" / "snap.properties"]
    if snap_home is not None:
        files.append(snap_home / "etc" / "snap.properties")
    settings: dict[str, str] = {}
    read = []
    for f in files:
        if f.is_file():
            read.append(f)
            for k, v in read_java_properties(f).items():
                if k in ("snap.pythonExecutable", "snap.pythonModuleDir") and k not in settings:
                    settings[k] = v
    return settings, read


def run_checks(snap_home: str | os.PathLike | None = None, user_dir: str | os.PathLike | None = None,
               graphs_dir: str | os.PathLike | None = None,
               plugin_dir: str | os.PathLike = PLUGIN_DIR) -> list[Check]:
    """All doctor checks, in order.

    Parameters
    ----------
    snap_home : path, optional
        SNAP installation (default: :func:`find_snap_home`).
    user_dir : path, optional
        SNAP user folder (default ``~/.snap``).
    graphs_dir, plugin_dir : path, optional
        What should be installed (default: the project's graphs and plugin).
    """
    user_dir = Path(user_dir).expanduser() if user_dir is not None else default_user_dir()
    checks: list[Check] = []
    home = find_snap_home(snap_home)
    install_fix = ("install SNAP 10 or later (https://step.esa.int/main/download/snap-download/) "
                   "and pass --snap-home DIR or set SNAP_HOME")
    if home is None:
        checks.append(Check("SNAP", False, "no SNAP installation found", install_fix))
    elif gpt_path(home) is None:
        checks.append(Check("SNAP", False, f"{home} has no bin/gpt", install_fix))
        home = None
    else:
        version = snap_version(home)
        vtext = ".".join(map(str, version)) if version else "unknown"
        if version is None or version[0] < 10:
            checks.append(Check("SNAP", False, f"{home}: SNAP version {vtext}; Python operators need SNAP 10+ (esa_snappy)",
                                "install SNAP 10 or later"))
        else:
            checks.append(Check("SNAP", True, f"{home} (SNAP {vtext}, {gpt_path(home)})"))

    conf_fix = (f"configure SNAP's Python (the one with snap-progressive-classifier): "
                f"{home or '$SNAP_HOME'}/bin/snappy-conf /path/to/python "
                "(SNAP 12+: pip install esa-snappy into that Python first); see docs/snap.md")
    settings, read = python_settings(user_dir, home)
    python = settings.get("snap.pythonExecutable")
    if python is None:
        checks.append(Check("esa_snappy configuration", False,
                            f"no snap.pythonExecutable in {user_dir / 'snap-python' / 'snappy.properties'}", conf_fix))
    elif shutil.which(python) is None:
        checks.append(Check("esa_snappy configuration", False, f"Python {python} (from {read[0]}) does not exist", conf_fix))
        python = None
    else:
        checks.append(Check("esa_snappy configuration", True, f"Python {python}"))

    module_dir = Path(settings.get("snap.pythonModuleDir") or user_dir / "snap-python").expanduser()
    jpy = module_dir / "esa_snappy" / "jpyconfig.properties"
    if jpy.is_file():
        checks.append(Check("esa_snappy module", True, str(module_dir / "esa_snappy")))
    else:
        checks.append(Check("esa_snappy module", False, f"{jpy} missing (esa_snappy not configured)", conf_fix))

    if python is None:
        checks.append(Check("Python packages", False, "no Python configured for SNAP to check",
                            "configure esa_snappy first (see above)"))
    else:
        checks.append(_check_imports(python))

    checks.append(_check_plugin(user_dir, plugin_dir))
    checks.append(_check_graphs(user_dir, graphs_dir))
    return checks


def _check_imports(python: str) -> Check:
    code = "import numpy, onnxruntime, snap_operators; print(snap_operators.__version__)"
    fix = f"{python} -m pip install snap-progressive-classifier (or pip install -e . in the project)"
    try:
        r = subprocess.run([python, "-c", code], check=False, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("Python packages", False, f"cannot run {python}: {exc}", fix)
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["failed"])[-1]
        return Check("Python packages", False, f"{python} cannot import snap_operators, numpy, onnxruntime: {last}", fix)
    return Check("Python packages", True, f"snap_operators {r.stdout.strip()}, numpy, onnxruntime import in {python}")


def _check_plugin(user_dir: Path, plugin_dir) -> Check:
    folder = user_dir / "snap-python" / PLUGIN_FOLDER
    jar = user_dir / "system" / "modules" / f"{_dashed(CODENAME)}.jar"
    fix = "snap-pc snap install" + ("" if user_dir == default_user_dir() else f" --user-dir {shlex.quote(str(user_dir))}")
    try:
        wanted = {rel: p.read_bytes() for rel, p in plugin_files(plugin_dir).items()}
    except SnapPcError as exc:
        return Check("plugin", False, str(exc), "reinstall snap-progressive-classifier")
    if folder.is_dir() and jar.is_file():
        return Check("plugin", False, f"installed twice ({folder} and the module {jar})",
                     "keep one: snap-pc snap uninstall, or uninstall the module in SNAP's plugin manager")
    if folder.is_dir():
        have = {rel: (folder / rel).read_bytes() for rel in wanted if (folder / rel).is_file()}
        where = folder
    elif jar.is_file():
        try:
            with zipfile.ZipFile(jar) as z:
                have = {rel: z.read(rel) for rel in wanted if rel in z.namelist()}
        except (OSError, zipfile.BadZipFile) as exc:
            return Check("plugin", False, f"cannot read {jar}: {exc}", "reinstall the .nbm module")
        where = jar
        fix = "build and install a new module: snap-pc snap nbm snap_pc.nbm, then SNAP > Tools > Plugins > Downloaded"
    else:
        return Check("plugin", False, f"not installed ({folder} missing)", fix)
    outdated = sorted(rel for rel in wanted if have.get(rel) != wanted[rel])
    if outdated:
        return Check("plugin", False, f"{where} is not current ({', '.join(outdated)})", fix)
    services = wanted[SERVICES_PATH].decode()
    n = sum(1 for ln in services.splitlines() if ln.strip() and not ln.startswith("#"))
    return Check("plugin", True, f"{where} ({n} operators, descriptors current)")


def _check_graphs(user_dir: Path, graphs_dir) -> Check:
    folder = user_dir / "graphs" / GRAPHS_FOLDER
    fix = "snap-pc snap install" + ("" if user_dir == default_user_dir() else f" --user-dir {shlex.quote(str(user_dir))}")
    try:
        wanted = graph_files(graphs_dir)
    except SnapPcError as exc:
        return Check("graphs", False, str(exc), "pass --graphs DIR")
    if not folder.is_dir():
        return Check("graphs", False, f"not installed ({folder} missing)", fix)
    outdated = sorted(n for n, p in wanted.items()
                      if not (folder / n).is_file() or (folder / n).read_bytes() != p.read_bytes())
    if outdated:
        return Check("graphs", False, f"{folder} is not current ({', '.join(outdated)})", fix)
    return Check("graphs", True, f"{folder} ({sum(n.endswith('.xml') for n in wanted)} graphs)")


# --- command line ---------------------------------------------------------------------


def add_command(sub) -> None:
    """Register ``snap-pc snap install|uninstall|nbm|doctor``."""
    p = sub.add_parser(
        "snap",
        help="install the operators into ESA SNAP 10+, build an NBM, check an installation",
        description="Run the operators inside ESA SNAP (10+) as SNAP Python operators through esa_snappy. "
        "See docs/snap.md.",
    )
    ssub = p.add_subparsers(dest="snap_command", metavar="SUBCOMMAND")
    p.set_defaults(handler=lambda args: p.print_help() or 2)
    user_help = "SNAP user folder (default ~/.snap)"

    i = ssub.add_parser("install", help="copy the plugin and the graphs into SNAP's user folder",
                        description=f"Copy the plugin to <user-dir>/snap-python/{PLUGIN_FOLDER}/ and the graphs to "
                        f"<user-dir>/graphs/{GRAPHS_FOLDER}/, then print gpt commands to try.")
    i.add_argument("--user-dir", help=user_help)
    i.add_argument("--graphs", metavar="DIR", help="graphs to install (default: the project's graphs/)")
    i.set_defaults(handler=_cmd_install)

    u = ssub.add_parser("uninstall", help="remove what install created",
                        description="Remove the plugin and graph folders created by `snap-pc snap install`.")
    u.add_argument("--user-dir", help=user_help)
    u.set_defaults(handler=_cmd_uninstall)

    n = ssub.add_parser("nbm", help="build a NetBeans module (.nbm) for SNAP's plugin manager",
                        description="Build OUT.nbm: install it in SNAP Desktop with Tools > Plugins > Downloaded > "
                        "Add Plugins...; the operators appear in Raster > Progressive Classifier.")
    n.add_argument("out", metavar="OUT.nbm", help="output file")
    n.add_argument("--version", help=f"module version, digits and dots (default {nbm_version()})")
    n.add_argument("--overwrite", action="store_true", help="replace an existing OUT.nbm")
    n.set_defaults(handler=_cmd_nbm)

    d = ssub.add_parser("doctor", help="check SNAP, esa_snappy, Python and the installed plugin",
                        description="Check an installation, one line per check; exit status 0 only when all pass.")
    d.add_argument("--snap-home", help="SNAP installation folder (default: $SNAP_HOME or the installer's default)")
    d.add_argument("--user-dir", help=user_help)
    d.add_argument("--graphs", metavar="DIR", help="graphs expected installed (default: the project's graphs/)")
    d.set_defaults(handler=_cmd_doctor)


def _cmd_install(args) -> int:
    res = install(args.user_dir, args.graphs)
    print(f"installed the SNAP plugin in {res.plugin_dir}")
    print(f"installed the graphs in {res.graphs_dir} (SNAP Desktop: Graph Builder > Graphs > {GRAPHS_FOLDER})")
    print("try them with gpt (replace ...):")
    home = find_snap_home()
    gpt = gpt_path(home) if home is not None else None
    for cmd in gpt_commands(res.graphs, str(gpt) if gpt else "gpt"):
        print("  " + cmd)
    print("check the installation with: snap-pc snap doctor")
    return 0


def _cmd_uninstall(args) -> int:
    removed = uninstall(args.user_dir)
    if not removed:
        print("nothing to remove")
    for path in removed:
        print(f"removed {path}")
    return 0


def _cmd_nbm(args) -> int:
    path = build_nbm(args.out, args.version, overwrite=args.overwrite)
    print(f"wrote {path}")
    print("install it in SNAP Desktop: Tools > Plugins > Downloaded > Add Plugins..., then restart SNAP")
    return 0


def _cmd_doctor(args) -> int:
    checks = run_checks(args.snap_home, args.user_dir, args.graphs)
    for c in checks:
        print(c.line())
    return 0 if all(c.ok for c in checks) else 1
