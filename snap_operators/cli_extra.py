"""Sub-commands beyond graph running, each defined in its own module."""

from __future__ import annotations

import importlib

#: module -> function adding its sub-command(s) to the `snap-pc` parser.
_COMMAND_MODULES = ("snap_operators.assess", "snap_operators.quicklook", "snap_operators.snap.install", "snap_pc_models.cli",
                    "snap_operators.timeseries")


def add_commands(sub) -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(name).add_command(sub)
