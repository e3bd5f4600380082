"""The package's layers, as the folders show them: each imports only the layers below it.

``core`` < ``engine`` < ``grid`` < ``io`` < ``science`` < ``ops`` < ``snap`` < ``apps`` < ``api``;
a module may import its own layer and those below, never one above, and no
module imports the training package (``snap_pc_models``, reached only
through the command registry). Imports inside functions count too. No two
modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "snap_operators"
LAYERS = ("core", "engine", "grid", "io", "science", "ops", "snap", "apps", "api")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py") if "plugin" not in p.parts}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package (and ``snap_pc_models``) that `path` imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in ("snap_operators", "snap_pc_models"):
                out.add(t)
    out.discard(name)
    return out


def _layer(module: str) -> int:
    parts = module.split(".")
    if parts[0] != "snap_operators":
        return len(LAYERS)  # the training package: above everything
    if len(parts) == 1:
        return 0  # the root package holds the version and imports nothing else
    return LAYERS.index(parts[1])


MODULES = _modules()
GRAPH = {name: _imports(name, path, set(MODULES)) for name, path in MODULES.items()}


def test_every_module_lives_in_a_layer():
    top = {n.split(".")[1] for n in MODULES if n.count(".") >= 1}
    assert top <= set(LAYERS), f"modules outside the layers: {sorted(top - set(LAYERS))}"
    stray = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not stray, f"modules directly in snap_operators/: {stray}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_only(module):
    up = sorted(t for t in GRAPH[module] if _layer(t) > _layer(module))
    assert not up, f"{module} (layer {LAYERS[_layer(module) - 1] if False else _layer(module)}) imports from above: {up}"


def test_root_package_imports_nothing_of_its_own():
    assert GRAPH["snap_operators"] == set()


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles = []

    def visit(n, path):
        state[n] = 1
        for m in sorted(GRAPH.get(n, ())):
            if m not in GRAPH:
                continue
            if state.get(m) == 1:
                cycles.append(path[path.index(m):] + [m])
            elif m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(GRAPH):
        if n not in state:
            visit(n, [n])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
