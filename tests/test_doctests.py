"""Every docstring example of the package and of the training code runs and gives what it shows.

The numpydoc examples are part of the documentation (``help(...)``); a changed default or preset
would leave them wrong without a word (``science.rules``' preset order once did).
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import snap_operators


def _modules(package) -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
                  if ".snap.plugin" not in m.name)  # generated SNAP plugin files need esa_snappy


PACKAGE_MODULES = _modules(snap_operators)


def _training_modules() -> list[str]:
    try:
        import snap_pc_models
    except ImportError:
        return []
    return _modules(snap_pc_models)


@pytest.mark.parametrize("name", PACKAGE_MODULES + _training_modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (above)"


def test_the_examples_are_found():
    """The walk finds the modules and their examples (a broken walk would pass every test above)."""
    finder = doctest.DocTestFinder()
    counts = [sum(len(t.examples) for t in finder.find(importlib.import_module(n))) for n in
              ("snap_operators.apps.assess", "snap_operators.science.change")]
    assert len(PACKAGE_MODULES) > 60 and all(counts), counts
