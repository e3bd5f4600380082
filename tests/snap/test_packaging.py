"""The wheel's contents, from pyproject.toml: every folder of the package is a listed package (setuptools
neither drops nor warns about it), and every data file (graphs, presets, plugin, pretrained model) is package data.

Checked on the configuration rather than by building a wheel: a build needs the build backend from the network.
"""

import tomllib
from pathlib import Path

from helpers import ROOT

SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder(package: str) -> Path:
    """The source folder of `package` under the project's package-dir mapping."""
    mapping = SETUPTOOLS.get("package-dir", {})
    parts = package.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in mapping:
            return ROOT / mapping[".".join(parts[:i])] / Path(*parts[i:])
    return ROOT / Path(*parts)


def _shipped(path: Path) -> bool:
    """`path` is in the wheel: a module of a listed package, or matched by that package's package-data."""
    for package in SETUPTOOLS["packages"]:
        folder = _folder(package)
        if path.parent != folder and folder not in path.parents:
            continue
        if path.parent == folder and path.suffix == ".py":
            return True
        # setuptools expands package-data patterns as recursive globs in the package's folder
        if any(path in folder.glob(pattern) for pattern in SETUPTOOLS.get("package-data", {}).get(package, [])):
            return True
    return False


def test_every_package_folder_is_listed():
    listed = {_folder(p) for p in SETUPTOOLS["packages"]}
    # a folder whose name is no identifier (META-INF) cannot be a package: setuptools leaves it to package-data
    folders = [d for d in (ROOT / "snap_operators").rglob("*")
               if d.is_dir() and all(part.isidentifier() and part != "__pycache__"
                                     for part in d.relative_to(ROOT).parts)]
    missing = [str(d.relative_to(ROOT)) for d in [ROOT / "snap_operators", *folders] if d not in listed]
    assert not missing, f"folders setuptools would ignore (with a warning): {missing}"


def test_graphs_presets_plugin_and_model_are_in_the_wheel():
    graphs = sorted((ROOT / "graphs").glob("*.xml")) + sorted((ROOT / "graphs").glob("*.properties"))
    assert len(graphs) >= 10
    assert _folder("snap_operators.graphs") == ROOT / "graphs"  # installed as snap_operators/graphs
    files = [f for f in (ROOT / "snap_operators").rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    left_out = [str(f.relative_to(ROOT)) for f in graphs + files if not _shipped(f)]
    assert not left_out, f"not in the wheel: {left_out}"
