"""How the operator commands show jobs, recurring jobs and workers: tables and JSON.

Times are UTC: in JSON as ISO 8601; in tables as ``YYYY-MM-DD HH:MM``, with
seconds where they tell something (one job, a worker's heartbeat). A table
is printed at its natural width, wider than the terminal if need be: an id
cut short or folded could not be copied into the next command.
Table cells are plain ``Text``: a job name or an error message holding
``[brackets]`` is shown as it is, never read as rich markup. Everything that
comes from the store goes through ``_escape``: control characters show as
escapes, never reach the terminal, and a long last error or long args keep
their start and end around a mark saying how much was cut.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from masa_jobs import JobInfo, JobState, ScheduleInfo, WorkerInfo

from ._common import stdout_console
from ._escape import json_text, printable, shorten

__all__ = [
    "JsonOption",
    "counts_json",
    "counts_table",
    "job_json",
    "job_table",
    "jobs_table",
    "last_error_text",
    "print_json",
    "print_table",
    "schedule_json",
    "schedules_table",
    "when",
    "worker_json",
    "workers_table",
]

NOT_SET = "-"
# What `show` prints of a longer last error or args, without --full: the end
# of a traceback alone runs to a few thousand characters.
SHOWN_ERROR_CHARS = 4000
SHOWN_ARGS_CHARS = 2000
_UNBOUNDED = 1_000_000

JsonOption = Annotated[
    bool, typer.Option("--json", help="Print JSON instead of tables, for scripts.")
]


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, control characters escaped the JSON way."""
    typer.echo(json_text(value, indent=2))


def print_table(table: Table) -> None:
    """``table`` on stdout, at its natural width if the console is narrower."""
    console = stdout_console()
    wide = console.options.update_width(_UNBOUNDED)
    natural = Measurement.get(console, wide, table).maximum
    if natural > console.width:
        console = Console(width=natural)
    console.print(table)


def when(moment: datetime | None, *, seconds: bool = False) -> str:
    """A UTC time for a table cell."""
    if moment is None:
        return NOT_SET
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column, no_wrap=True)
    return table


def _row(table: Table, *cells: object) -> None:
    table.add_row(*(Text(printable(str(cell))) for cell in cells))


def counts_json(counts: dict[JobState, int]) -> dict[str, int]:
    """Every state, zero included, in the order of a job's life."""
    return {state.value: counts.get(state, 0) for state in JobState}


def counts_table(counts: dict[JobState, int]) -> Table:
    by_state = counts_json(counts)
    table = _table("Jobs per state", *by_state, "total")
    for column in table.columns:
        column.justify = "right"
    _row(table, *by_state.values(), sum(by_state.values()))
    return table


def job_json(info: JobInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "state": info.state.value,
        "queue": info.queue,
        "priority": info.priority,
        "attempts": info.attempts,
        "created_at": _iso(info.created_at),
        "next_try_at": _iso(info.next_try_at),
        "last_try_at": _iso(info.last_try_at),
        "last_error": info.last_error,
        "args": info.args,
    }


def jobs_table(title: str, infos: Iterable[JobInfo]) -> Table:
    table = _table(title, "id", "name", "state", "tries", "created (UTC)", "next try (UTC)")
    table.columns[3].justify = "right"
    for info in infos:
        _row(
            table,
            info.id,
            info.name,
            info.state.value,
            info.attempts,
            when(info.created_at),
            when(info.next_try_at),
        )
    return table


def job_table(info: JobInfo, *, full: bool = False) -> Table:
    """One job, a field per row (its last error is printed below it: ``last_error_text``).

    The args are JSON; when longer than ``SHOWN_ARGS_CHARS`` they keep their
    start and end, unless ``full``.
    """
    title = Text(f"Job {printable(info.id)}")
    table = Table(title=title, title_justify="left", show_header=False, box=box.SIMPLE)
    table.add_column("field", style="bold")
    table.add_column("value")
    args = NOT_SET if info.args is None else json_text(info.args)
    if not full:
        args = shorten(args, SHOWN_ARGS_CHARS, "--full shows them all")
    for field, value in (
        ("name", info.name),
        ("state", info.state.value),
        ("queue", info.queue),
        ("priority", info.priority),
        ("attempts", info.attempts),
        ("created (UTC)", when(info.created_at, seconds=True)),
        ("next try (UTC)", when(info.next_try_at, seconds=True)),
        ("last try (UTC)", when(info.last_try_at, seconds=True)),
        ("args", args),
    ):
        _row(table, field, value)
    return table


def last_error_text(info: JobInfo, *, full: bool, hint: str) -> str:
    """``last error:`` and the job's last error, lines kept, control characters escaped.

    Longer than ``SHOWN_ERROR_CHARS``, it keeps its first and last lines around
    a line saying how many characters were cut and ``hint`` (how to see them),
    unless ``full``.
    """
    if info.last_error is None:
        return "last error: none"
    error = (
        info.last_error if full else shorten(info.last_error, SHOWN_ERROR_CHARS, hint, lines=True)
    )
    return "last error:\n" + printable(error, keep_newlines=True)


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "job_class": info.job_class,
        "cron_expression": info.cron_expression,
        "timezone": info.timezone,
        "next_fire_at": _iso(info.next_fire_at),
        "last_fire_at": _iso(info.last_fire_at),
        "known": info.known,
        # The args a schedule of an ordinary job enqueues (job_class "job:<name>").
        "args": info.args,
        "paused": info.paused,
    }


def schedules_table(infos: Iterable[ScheduleInfo]) -> Table:
    table = _table(
        "Recurring jobs",
        "id",
        "class",
        "cron",
        "time zone",
        "next fire (UTC)",
        "last fire (UTC)",
        "known",
        "paused",
    )
    for info in infos:
        _row(
            table,
            info.id,
            info.job_class,
            info.cron_expression,
            info.timezone,
            when(info.next_fire_at),
            when(info.last_fire_at),
            "yes" if info.known else "no",
            "yes" if info.paused else "no",
        )
    return table


def worker_json(info: WorkerInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "started_at": _iso(info.started_at),
        "last_seen_at": _iso(info.last_seen_at),
        "running_jobs": info.running_jobs,
    }


def workers_table(infos: Iterable[WorkerInfo]) -> Table:
    table = _table(
        "Live workers", "id", "host", "pid", "started (UTC)", "last seen (UTC)", "running jobs"
    )
    for column in (table.columns[2], table.columns[5]):
        column.justify = "right"
    for info in infos:
        _row(
            table,
            info.id,
            info.host,
            info.pid,
            when(info.started_at, seconds=True),
            when(info.last_seen_at, seconds=True),
            info.running_jobs,
        )
    return table
