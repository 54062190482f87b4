"""Subcommands imported when they are used, so that a worker carries only its own code.

A command's module, and what it imports (the dashboard's web stack, rich
tables, the benchmark's settings), stays in memory for as long as the
process lives; ``masa-jobs worker`` runs for days and needs none of the other
commands. ``LazyGroup`` knows every command by name and imports a command's
module when click asks for that command: to run it, to show its help, or,
for ``masa-jobs --help``, to list all of them with their summaries.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup

__all__ = ["LazyGroup"]


class _LazyCommands(MutableMapping[str, Any]):
    """Command name -> click command, built from ``module:function`` on first use.

    A mapping, because ``TyperGroup`` reads ``self.commands`` directly: its
    names for the listing and for "did you mean" suggestions, an item to run.
    """

    def __init__(self, package: str, specs: Mapping[str, str]) -> None:
        self._package = package
        self._specs = dict(specs)
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        command = self._loaded.get(name)
        if command is None:
            command = self._loaded[name] = _command(self._package, name, self._specs[name])
        return command

    def __setitem__(self, name: str, command: Any) -> None:
        self._specs.setdefault(name, "")
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._specs[name]
        self._loaded.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


def _command(package: str, name: str, spec: str) -> Any:
    """The click command of the Typer command function ``module:function``, named ``name``."""
    module_name, _, function = spec.partition(":")
    callback = getattr(importlib.import_module(f"{package}.{module_name}"), function)
    # A one-command Typer turns the function into a click command exactly as
    # the group would have (same parameter handling, same rich help).
    single = typer.Typer(add_completion=False)
    single.command(name)(callback)
    return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """A Typer group whose commands are listed in ``lazy_commands`` (name -> ``module:function``
    relative to ``lazy_package``) and imported on first use; the order is the listing's."""

    lazy_package: ClassVar[str]
    lazy_commands: ClassVar[Mapping[str, str]]

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        commands = _LazyCommands(self.lazy_package, self.lazy_commands)
        for name, command in self.commands.items():  # any registered the usual way
            commands[name] = command
        self.commands = commands
