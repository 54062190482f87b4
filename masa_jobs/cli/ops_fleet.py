"""Operator commands on what runs the jobs: ``schedules``, ``trigger``,
``pause-schedule``, ``resume-schedule``, ``workers``.

Like the commands on jobs (``ops``), they take the APP argument of
``masa-jobs worker`` and open the same store, but never run a worker or
fire a recurring job (see ``_operator``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masa_jobs import ScheduleInfo, ScheduleNotFoundError, WorkerInfo

from ._common import AppArgument, AppDirOption, CliError
from ._operator import OperatorApp, run_operation
from ._ops_view import (
    JsonOption,
    print_json,
    print_table,
    schedule_json,
    schedules_table,
    worker_json,
    workers_table,
)

__all__ = ["pause_schedule", "resume_schedule", "schedules", "trigger", "workers"]

HERE = Path(".")

ScheduleIdArgument = Annotated[
    str, typer.Argument(metavar="SCHEDULE_ID", help="The recurring job's id.")
]


def _no_schedule(schedule_id: str) -> CliError:
    return CliError(
        f"no recurring job with id {schedule_id!r}; `masa-jobs schedules APP` lists them"
    )


def schedules(app: AppArgument, as_json: JsonOption = False, app_dir: AppDirOption = HERE) -> None:
    """List the recurring jobs in the store, with their next and last tick.

    known is "no" when APP has no class of that name: the schedule stays
    stored, and its ticks go dead until a worker that knows the class runs them.
    """

    async def fetch(target: OperatorApp) -> list[ScheduleInfo]:
        return await target.manager.list_schedules()

    infos = run_operation(app, app_dir, fetch)
    if as_json:
        print_json([schedule_json(info) for info in infos])
        return
    if not infos:
        typer.echo("no recurring jobs")
        return
    print_table(schedules_table(infos))
    if not all(info.known for info in infos):
        typer.echo(
            'known "no": APP has no class of that name; the ticks go dead until a worker '
            "that knows the class runs them"
        )


def trigger(
    app: AppArgument, schedule_id: ScheduleIdArgument, app_dir: AppDirOption = HERE
) -> None:
    """Run a recurring job once now, besides its schedule, and print the new job's id.

    A paused recurring job can be triggered too.
    """

    async def fire(target: OperatorApp) -> str:
        try:
            return await target.manager.trigger_schedule(schedule_id)
        except ScheduleNotFoundError:
            raise _no_schedule(schedule_id) from None

    job_id = run_operation(app, app_dir, fire)
    typer.echo(f"triggered {schedule_id}: job {job_id} enqueued")


def pause_schedule(
    app: AppArgument, schedule_id: ScheduleIdArgument, app_dir: AppDirOption = HERE
) -> None:
    """Pause a recurring job: its ticks do not fire until resume-schedule.

    It stays stored and can still be triggered; a worker that declares its
    class again does not resume it.
    """

    async def pause(target: OperatorApp) -> None:
        try:
            await target.manager.pause_schedule(schedule_id)
        except ScheduleNotFoundError:
            raise _no_schedule(schedule_id) from None

    run_operation(app, app_dir, pause)
    typer.echo(f"paused {schedule_id}")


def resume_schedule(
    app: AppArgument, schedule_id: ScheduleIdArgument, app_dir: AppDirOption = HERE
) -> None:
    """Resume a paused recurring job.

    Ticks missed while paused follow options.missed_ticks: none is lost
    within options.misfire_grace, older ones give one catch-up run or none.
    """

    async def resume(target: OperatorApp) -> None:
        try:
            await target.manager.resume_schedule(schedule_id)
        except ScheduleNotFoundError:
            raise _no_schedule(schedule_id) from None

    run_operation(app, app_dir, resume)
    typer.echo(f"resumed {schedule_id}")


def workers(app: AppArgument, as_json: JsonOption = False, app_dir: AppDirOption = HERE) -> None:
    """List the live workers: id, host, pid, start, last heartbeat and running jobs.

    A worker is live when its last heartbeat is within options.lease_timeout.
    """

    async def fetch(target: OperatorApp) -> tuple[list[WorkerInfo], float]:
        return await target.manager.workers(), target.options.lease_timeout

    infos, lease_timeout = run_operation(app, app_dir, fetch)
    if as_json:
        print_json([worker_json(info) for info in infos])
        return
    if not infos:
        typer.echo(f"no live workers (none sent a heartbeat in the last {lease_timeout:g} s)")
        return
    print_table(workers_table(infos))
