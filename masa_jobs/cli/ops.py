"""Operator commands on jobs: ``jobs``, ``show``, ``retry``, ``cancel``, ``delete``, ``purge``.

Like every operator command (``ops_fleet`` has the recurring jobs and the
workers), they take the APP argument of ``masa-jobs worker`` and open the
same store, but never run a worker or fire a recurring job (see ``_operator``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from masa_jobs import (
    InvalidJobStateError,
    JobInfo,
    JobManager,
    JobNotFoundError,
    JobState,
)

from ._common import AppArgument, AppDirOption, fail, stderr_console, stdout_console
from ._operator import OperatorApp, run_operation
from ._ops_view import (
    JsonOption,
    counts_json,
    counts_table,
    job_json,
    job_table,
    jobs_table,
    print_json,
    print_table,
)

__all__ = ["cancel", "delete", "jobs", "purge", "retry", "show"]

# Exit code when some of the given ids could not be acted on (the others were).
SOME_FAILED_EXIT_CODE = 1
DEFAULT_LIMIT = 20

JobIdArgument = Annotated[
    str, typer.Argument(metavar="JOB_ID", help="The job's id.", show_default=False)
]
JobIdsArgument = Annotated[
    list[str],
    typer.Argument(metavar="JOB_ID...", help="One or more job ids.", show_default=False),
]
HERE = Path(".")


def jobs(
    app: AppArgument,
    state: Annotated[
        JobState | None,
        typer.Option(case_sensitive=False, help="Show only the jobs in this state."),
    ] = None,
    limit: Annotated[
        int, typer.Option(min=0, help="How many jobs to list (0: only the counts).")
    ] = DEFAULT_LIMIT,
    offset: Annotated[int, typer.Option(min=0, help="Newest jobs to skip, to page.")] = 0,
    as_json: JsonOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Count the jobs in each state, then list the newest jobs (all, or of one --state).

    With --json: one object, "counts" (jobs per state) and "jobs" (the listed
    jobs, each with its args and last error).
    """

    async def overview(target: OperatorApp) -> tuple[dict[JobState, int], list[JobInfo]]:
        manager = target.manager
        return await manager.count(), await manager.list(state, limit=limit, offset=offset)

    counts, infos = run_operation(app, app_dir, overview)
    if as_json:
        print_json({"counts": counts_json(counts), "jobs": [job_json(i) for i in infos]})
        return
    print_table(counts_table(counts))
    if limit == 0:
        return
    label = "" if state is None else f"{state.value} "
    if not infos:
        typer.echo(f"no {label}jobs" + (f" after the newest {offset}" if offset else ""))
        return
    total = sum(counts.values()) if state is None else counts.get(state, 0)
    shown = f"{offset + 1}-{offset + len(infos)} of {max(total, offset + len(infos))}"
    print_table(jobs_table(f"Newest {label}jobs ({shown})", infos))


def show(
    app: AppArgument,
    job_id: JobIdArgument,
    as_json: JsonOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Show one job: its state, attempts, times, args and last error (with its traceback)."""

    async def fetch(target: OperatorApp) -> JobInfo | None:
        return await target.manager.get(job_id)

    info = run_operation(app, app_dir, fetch)
    if info is None:
        fail(f"no job with id {job_id!r}; `masa-jobs jobs APP` lists the jobs and their ids")
    if as_json:
        print_json(job_json(info))
        return
    # Fitted to the terminal: long args wrap (the id is in the title).
    stdout_console().print(job_table(info))
    typer.echo("last error: none" if info.last_error is None else f"last error:\n{info.last_error}")


def retry(app: AppArgument, job_ids: JobIdsArgument, app_dir: AppDirOption = HERE) -> None:
    """Run dead jobs again, now: each goes back to enqueued for one more attempt.

    Prints a line per id; an id that is unknown or not dead gets an error line
    on stderr, the others are still retried, and the exit code is then 1.
    """

    async def one(manager: JobManager, job_id: str) -> str:
        info = await manager.retry(job_id)
        return f"retried {job_id} ({info.name}): {info.state.value}"

    _for_each(app, app_dir, job_ids, one)


def cancel(app: AppArgument, job_ids: JobIdsArgument, app_dir: AppDirOption = HERE) -> None:
    """Cancel jobs that have not started (scheduled or enqueued): they will not run.

    Prints a line per id; an id that is unknown or already started gets an
    error line on stderr, the others are still cancelled, and the exit code is then 1.
    """

    async def one(manager: JobManager, job_id: str) -> str:
        info = await manager.cancel(job_id)
        return f"cancelled {job_id} ({info.name})"

    _for_each(app, app_dir, job_ids, one)


def delete(app: AppArgument, job_ids: JobIdsArgument, app_dir: AppDirOption = HERE) -> None:
    """Remove jobs from the store, whatever their state.

    A job a worker is running at the time still runs to its end, but its
    outcome is not recorded. Prints a line per id; an unknown id gets an error
    line on stderr, the others are still deleted, and the exit code is then 1.
    """

    async def one(manager: JobManager, job_id: str) -> str:
        await manager.delete(job_id)
        return f"deleted {job_id}"

    _for_each(app, app_dir, job_ids, one)


def _for_each(
    app: str,
    app_dir: Path,
    job_ids: list[str],
    action: Callable[[JobManager, str], Awaitable[str]],
) -> None:
    """Apply ``action`` to each id once, in order; exit 1 if any was refused."""

    async def each(target: OperatorApp) -> int:
        refused = 0
        for job_id in dict.fromkeys(job_ids):
            try:
                done = await action(target.manager, job_id)
            except (JobNotFoundError, InvalidJobStateError) as exc:
                stderr_console().print(f"error: {exc}", markup=False)
                refused += 1
            else:
                typer.echo(done)
        return refused

    if run_operation(app, app_dir, each):
        raise typer.Exit(SOME_FAILED_EXIT_CODE)


def purge(
    app: AppArgument,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            min=0,
            metavar="SECONDS",
            help="Remove jobs finished more than this long ago (default: options.retention).",
            show_default=False,
        ),
    ] = None,
    app_dir: AppDirOption = HERE,
) -> None:
    """Remove finished jobs (succeeded, dead, cancelled) and print how many were removed.

    Only jobs that finished more than --older-than seconds ago go; pending and
    running jobs are never touched.
    """

    async def remove(target: OperatorApp) -> tuple[int, float]:
        seconds = target.options.retention if older_than is None else older_than
        return await target.manager.purge(timedelta(seconds=seconds)), seconds

    removed, seconds = run_operation(app, app_dir, remove)
    noun = "job" if removed == 1 else "jobs"
    typer.echo(f"removed {removed} finished {noun} that finished more than {seconds:g} s ago")
