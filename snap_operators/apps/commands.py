"""The ``snap-pc`` command registry: sub-commands beyond graph running.

Each command module has ``add_command(subparsers)`` and is registered as an
entry point of the group ``snap_pc.commands`` (``pyproject.toml``), so the
CLI imports no command module by name: the training package
(``snap_pc_models``, TensorFlow) is reached only through this registry, and
other packages can add commands the same way.
"""

from __future__ import annotations

from importlib.metadata import entry_points

#: Entry-point group of ``snap-pc`` sub-commands.
GROUP = "snap_pc.commands"


def add_commands(sub) -> None:
    """Add every registered command to the `sub` parsers, in name order (a stable ``--help``)."""
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        ep.load()(sub)
