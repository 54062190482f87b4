"""Operator commands on jobs: ``jobs``, ``show``, ``retry``, ``cancel``, ``delete``, ``purge``.

Like every operator command (``ops_fleet`` has the recurring jobs and the
workers), they take the APP argument of ``masa-jobs worker`` and open the
same store, but never run a worker or fire a recurring job (see ``_operator``).

``delete``, ``cancel`` and ``purge`` cannot be undone (no command brings a
cancelled job back: ``retry`` takes dead jobs only): on a terminal they ask
first, without one they need ``--yes`` (see ``_confirm``). ``retry`` acts at
once: it runs jobs that were meant to run, and only the ones named.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from masa_jobs import JobInfo, JobManager, JobRecord, JobState
from masa_jobs.queries import MAX_PAGE_SIZE, JobQuery, Page, pages
from masa_jobs.records import FINISHED_STATES, PENDING_STATES, utcnow
from masa_jobs.stores.base import Store

from ._common import AppArgument, AppDirOption, fail, stdout_console
from ._confirm import DryRunOption, YesOption, confirmed, must_ask
from ._escape import printable
from ._job_actions import SOME_FAILED_EXIT_CODE, JobAction, act_on_each
from ._operator import OperatorApp, run_operation
from ._ops_view import (
    JsonOption,
    counts_json,
    counts_table,
    job_json,
    job_table,
    jobs_table,
    last_error_text,
    print_json,
    print_table,
)

__all__ = ["cancel", "delete", "jobs", "purge", "retry", "show"]

DEFAULT_LIMIT = 20
# Finished jobs read per query when counting what a purge would remove.
PURGE_COUNT_PAGE = 500

JobIdArgument = Annotated[
    str, typer.Argument(metavar="JOB_ID", help="The job's id.", show_default=False)
]
JobIdsArgument = Annotated[
    list[str],
    typer.Argument(metavar="JOB_ID...", help="One or more job ids.", show_default=False),
]
FullOption = Annotated[
    bool,
    typer.Option(
        "--full", help="Print long args and a long last error whole, not their start and end."
    ),
]
HERE = Path(".")


def jobs(
    app: AppArgument,
    state: Annotated[
        JobState | None,
        typer.Option(case_sensitive=False, help="Show only the jobs in this state."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Show only the jobs of this job name.", show_default=False)
    ] = None,
    limit: Annotated[
        int,
        typer.Option(min=0, max=MAX_PAGE_SIZE, help="How many jobs to list (0: only the counts)."),
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        typer.Option(
            help="Start after this cursor (printed under a full page).", show_default=False
        ),
    ] = None,
    offset: Annotated[
        int, typer.Option(min=0, help="Newest jobs to skip (walks them; --cursor does not).")
    ] = 0,
    as_json: JsonOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Count the jobs in each state, then list the newest jobs (all, or of one --state
    or --name), a page at a time: a full page ends with the --cursor of the next.

    With --json: one object, "counts" (jobs per state), "jobs" (the listed
    jobs, each with its args and last error) and "next_cursor" (null on the
    last page).
    """
    if offset and (cursor or name):
        fail("--offset pages by counting from the newest job: use --cursor with --name")

    async def overview(target: OperatorApp) -> tuple[dict[JobState, int], Page[JobInfo]]:
        manager = target.manager
        counts = await manager.count()
        if limit == 0:
            return counts, Page()
        if offset:
            return counts, Page(tuple(await manager.list(state, limit=limit, offset=offset)))
        query = JobQuery.of(state, name=name, limit=limit, cursor=cursor)
        return counts, await manager.list_jobs(query)

    counts, page = run_operation(app, app_dir, overview)
    infos = list(page.items)
    if as_json:
        jobs_out = [job_json(i) for i in infos]
        print_json(
            {"counts": counts_json(counts), "jobs": jobs_out, "next_cursor": page.next_cursor}
        )
        return
    print_table(counts_table(counts))
    if limit == 0:
        return
    label = "" if state is None else f"{state.value} "
    label += "" if name is None else f"{printable(name)} "
    if not infos:
        typer.echo(f"no {label}jobs" + (f" after the newest {offset}" if offset else ""))
        return
    print_table(jobs_table(f"Newest {label}jobs ({len(infos)} shown)", infos))
    if page.next_cursor is not None:
        typer.echo(f"more: --cursor {page.next_cursor}")


def show(
    app: AppArgument,
    job_id: JobIdArgument,
    full: FullOption = False,
    as_json: JsonOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Show one job: its state, attempts, times, args and last error (with its traceback).

    Control characters from the store are shown as escapes (\\x1b, \\r, \\u202e);
    long args and a long last error keep their start and end unless --full.
    """

    async def fetch(target: OperatorApp) -> JobInfo | None:
        return await target.manager.get(job_id)

    info = run_operation(app, app_dir, fetch)
    if info is None:
        fail(f"no job with id {job_id!r}; `masa-jobs jobs APP` lists the jobs and their ids")
    if as_json:
        print_json(job_json(info))
        return
    # Fitted to the terminal: long args wrap (the id is in the title).
    stdout_console().print(job_table(info, full=full))
    whole = f"`masa-jobs show {printable(app)} {printable(job_id)} --full` prints them all"
    typer.echo(last_error_text(info, full=full, hint=whole))


async def _retry_one(manager: JobManager, job_id: str) -> str:
    info = await manager.retry(job_id)
    return f"retried {printable(job_id)} ({printable(info.name)}): {info.state.value}"


async def _cancel_one(manager: JobManager, job_id: str) -> str:
    info = await manager.cancel(job_id)
    return f"cancelled {printable(job_id)} ({printable(info.name)})"


async def _delete_one(manager: JobManager, job_id: str) -> str:
    await manager.delete(job_id)
    return f"deleted {printable(job_id)}"


RETRY = JobAction("retry", "retried", frozenset({JobState.DEAD}), _retry_one)
CANCEL = JobAction("cancel", "cancelled", PENDING_STATES | {JobState.PROCESSING}, _cancel_one)
DELETE = JobAction("delete", "deleted", frozenset(JobState), _delete_one)


def retry(
    app: AppArgument,
    job_ids: JobIdsArgument,
    dry_run: DryRunOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Run dead jobs again, now: each goes back to enqueued for one more attempt.

    Prints a line per id; an id that is unknown or not dead gets an error line
    on stderr, the others are still retried, and the exit code is then 1.
    """
    act_on_each(app, app_dir, job_ids, RETRY, ask=False, dry_run=dry_run)


def cancel(
    app: AppArgument,
    job_ids: JobIdsArgument,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Cancel jobs that have not finished: pending ones will not run, running ones are stopped.

    It cannot be undone: on a terminal it asks first, without one it needs
    --yes. Prints a line per id; an id that is unknown or already finished gets
    an error line on stderr, the others are still cancelled, and the exit code
    is then 1.
    """
    ask = must_ask("cancel", yes=yes, dry_run=dry_run)
    act_on_each(app, app_dir, job_ids, CANCEL, ask=ask, dry_run=dry_run)


def delete(
    app: AppArgument,
    job_ids: JobIdsArgument,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Remove jobs from the store, whatever their state.

    On a terminal it asks first, without one it needs --yes. A job a worker is
    running at the time still runs to its end, but its outcome is not recorded.
    Prints a line per id; an unknown id gets an error line on stderr, the
    others are still deleted, and the exit code is then 1.
    """
    ask = must_ask("delete", yes=yes, dry_run=dry_run)
    act_on_each(app, app_dir, job_ids, DELETE, ask=ask, dry_run=dry_run)


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
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    app_dir: AppDirOption = HERE,
) -> None:
    """Remove finished jobs (succeeded, dead, cancelled) and print how many were removed.

    Only jobs that finished more than --older-than seconds ago go; pending and
    running jobs are never touched. On a terminal it says how many would go
    and asks first; without one (cron, a systemd timer) it needs --yes.
    """
    ask = must_ask("purge", yes=yes, dry_run=dry_run)

    async def remove(target: OperatorApp) -> tuple[str, bool]:
        seconds = target.options.retention if older_than is None else older_than
        cutoff = utcnow() - timedelta(seconds=seconds)
        age = f"that finished more than {seconds:g} s ago"
        if ask or dry_run:
            counts = await _purgeable(target.job_store, cutoff)
            going = f"{_finished_jobs(sum(counts.values()))}{_by_state(counts)} {age}"
            if dry_run:
                return f"would remove {going}", True
            if counts and not confirmed(f"Remove {going}?"):
                return "nothing removed", False
        # The cut-off counted and asked about, not one that moved on meanwhile.
        removed = await target.manager.purge(utcnow() - cutoff)
        return f"removed {_finished_jobs(removed)} {age}", True

    line, done = run_operation(app, app_dir, remove)
    typer.echo(line)
    if not done:
        raise typer.Exit(SOME_FAILED_EXIT_CODE)


async def _purgeable(store: Store, cutoff: datetime) -> dict[JobState, int]:
    """How many jobs of each finished state finished before ``cutoff``: what a
    purge would remove. Read-only, a page of finished jobs at a time (the stores
    count by state, not by finish time)."""
    counts: Counter[JobState] = Counter()

    async def fetch(query: JobQuery) -> Page[JobRecord]:
        return await store.list_jobs(query, await store.now())

    async for page in pages(fetch, JobQuery.of(FINISHED_STATES, limit=PURGE_COUNT_PAGE)):
        counts.update(
            job.state
            for job in page.items
            if job.finished_at is not None and job.finished_at < cutoff
        )
    return dict(counts)


def _finished_jobs(count: int) -> str:
    return f"{count} finished job{'' if count == 1 else 's'}"


def _by_state(counts: dict[JobState, int]) -> str:
    parts = [f"{counts[state]} {state.value}" for state in JobState if counts.get(state)]
    return f" ({', '.join(parts)})" if parts else ""
