"""``core.allocator``: the ``snap-pc`` process keeps freed tile memory for the next tiles."""

import json
import os
import subprocess
import sys

import pytest

from snap_operators.apps import cli
from snap_operators.core.allocator import GLIBC_SETTINGS

# Tiles of 4 MiB allocated, freed and allocated again, as a graph does chunk after chunk: the
# second round's minor page faults are the fresh memory the process had to touch again.
CHILD = """
import json, resource, sys
import numpy as np
from snap_operators.core.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
tiles = [np.ones(1 << 20, np.float32) for _ in range(25)]
del tiles
f0 = faults()
tiles = [np.ones(1 << 20, np.float32) for _ in range(25)]
print(json.dumps({"applied": applied, "faults": faults() - f0}))
"""


def _child(mode: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in GLIBC_SETTINGS}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def _glibc() -> bool:
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


@pytest.mark.skipif(not _glibc(), reason="glibc's allocator only (Linux with glibc)")
def test_freed_tiles_are_reused_instead_of_faulted_in_again():
    kept, default = _child("keep"), _child("none")
    assert kept["applied"] is True
    # 100 MiB touched again: about 25 600 faults of 4 KiB pages with glibc's defaults (the freed
    # tiles went back to the kernel), next to none once the memory is kept
    assert default["faults"] > 5000
    assert kept["faults"] < default["faults"] / 10


@pytest.mark.skipif(not _glibc(), reason="glibc's allocator only (Linux with glibc)")
@pytest.mark.parametrize("setting", GLIBC_SETTINGS)
def test_the_users_own_glibc_settings_win(setting):
    got = _child("keep", **{setting: "1048576" if setting != "MALLOC_ARENA_MAX" else "4"})
    assert got["applied"] is False


def test_the_program_sets_it_for_graph_runs_only(monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    missing = str(tmp_path / "missing.xml")
    for argv in (["snap-pc", "run", missing], ["snap-pc", "BandMaths", "-h"]):
        monkeypatch.setattr(sys, "argv", argv)
        cli.main()
    assert calls == [1, 1]
    monkeypatch.setattr(sys, "argv", ["snap-pc", "ops"])
    cli.main()  # another command (training among them): glibc as it comes
    assert calls == [1, 1]
    assert cli.main(["run", missing]) == 1  # a program calling main with its arguments keeps its allocator
    assert calls == [1, 1]
    assert "missing.xml" in capsys.readouterr().err
