"""The ``masa-jobs`` command: ``demo``, ``worker``, ``bench`` and the operator commands.

The operator commands (``jobs``, ``show``, ``retry``, ``cancel``, ``delete``,
``purge``, ``schedules``, ``trigger``, ``pause-schedule``, ``resume-schedule``,
``workers``, ``queues``, ``pause-queue``, ``resume-queue``) look after the jobs of a
durable store from a shell, on the same APP argument as ``worker``.

Each command lives in its own module. Modules that define job handlers (the
demo's, the benchmark's) are imported only when their command runs, because
the registry registers every imported handler class.

The CLI is an application of the library, so unlike the rest of masa_jobs it
composes with the ``masa_jobs.containers`` package; ``import masa_jobs`` never imports it.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from .bench import bench
from .dashboard import dashboard
from .demo import demo
from .health import health
from .ops import cancel, delete, jobs, purge, retry, show
from .ops_fleet import pause_schedule, resume_schedule, schedules, trigger, workers
from .ops_queues import pause_queue, queues, resume_queue
from .worker import worker

__all__ = ["app", "main"]

app = typer.Typer(
    name="masa-jobs",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
app.command("demo")(demo)
app.command("worker")(worker)
app.command("bench")(bench)
app.command("jobs")(jobs)
app.command("show")(show)
app.command("retry")(retry)
app.command("cancel")(cancel)
app.command("delete")(delete)
app.command("purge")(purge)
app.command("schedules")(schedules)
app.command("trigger")(trigger)
app.command("pause-schedule")(pause_schedule)
app.command("resume-schedule")(resume_schedule)
app.command("workers")(workers)
app.command("queues")(queues)
app.command("pause-queue")(pause_queue)
app.command("resume-queue")(resume_queue)
app.command("dashboard")(dashboard)
app.command("health")(health)


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
