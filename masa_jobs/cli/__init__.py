"""The ``masa-jobs`` command: ``demo``, ``worker``, ``bench`` and the operator commands.

The operator commands (``jobs``, ``show``, ``retry``, ``cancel``, ``delete``,
``purge``, ``schedules``, ``trigger``, ``pause-schedule``, ``resume-schedule``,
``workers``, ``queues``, ``pause-queue``, ``resume-queue``) look after the jobs of a
durable store from a shell, on the same APP argument as ``worker``.

Each command lives in its own module, imported only when that command runs
(or ``--help`` lists them all): a worker process carries neither the
dashboard nor rich's tables, and the modules that define job handlers (the
demo's, the benchmark's) stay unimported, because the registry registers
every imported handler class.

The CLI is an application of the library, so unlike the rest of masa_jobs it
composes with the ``masa_jobs.containers`` package; ``import masa_jobs`` never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, ClassVar

import typer

from .. import __version__
from ._lazy import LazyGroup

__all__ = ["app", "main"]


class _Commands(LazyGroup):
    # Command name -> module:function in this package, in the order --help lists them.
    lazy_package = __name__
    lazy_commands: ClassVar[Mapping[str, str]] = {
        "demo": "demo:demo",
        "worker": "worker:worker",
        "bench": "bench:bench",
        "jobs": "ops:jobs",
        "show": "ops:show",
        "retry": "ops:retry",
        "cancel": "ops:cancel",
        "delete": "ops:delete",
        "purge": "ops:purge",
        "schedules": "ops_fleet:schedules",
        "trigger": "ops_fleet:trigger",
        "pause-schedule": "ops_fleet:pause_schedule",
        "resume-schedule": "ops_fleet:resume_schedule",
        "workers": "ops_fleet:workers",
        "queues": "ops_queues:queues",
        "pause-queue": "ops_queues:pause_queue",
        "resume-queue": "ops_queues:resume_queue",
        "dashboard": "dashboard:dashboard",
        "health": "health:health",
    }


app = typer.Typer(
    name="masa-jobs",
    cls=_Commands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"masa-jobs {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Typed background jobs on a dependency-injector container.

    Try `masa-jobs demo` first: it needs no set-up and no code of yours.
    """


def main() -> None:
    """Entry point of the ``masa-jobs`` console script."""
    app()
