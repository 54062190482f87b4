"""Operator commands on queues: ``queues``, ``pause-queue``, ``resume-queue``.

A paused queue is stored, so every worker (and every worker started later)
stops starting its jobs until it is resumed; enqueues still go in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from masa_jobs import InvalidJobOptionsError

from ._common import AppArgument, AppDirOption, CliError
from ._operator import OperatorApp, run_operation
from ._ops_view import JsonOption, print_json

__all__ = ["pause_queue", "queues", "resume_queue"]

HERE = Path(".")

QueueArgument = Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.")]


def queues(app: AppArgument, as_json: JsonOption = False, app_dir: AppDirOption = HERE) -> None:
    """List the paused queues."""

    async def fetch(target: OperatorApp) -> list[str]:
        return sorted(await target.manager.paused_queues())

    paused = run_operation(app, app_dir, fetch)
    if as_json:
        print_json({"paused": paused})
    elif paused:
        typer.echo("paused queues: " + ", ".join(paused))
    else:
        typer.echo("no queue is paused")


def pause_queue(app: AppArgument, queue: QueueArgument, app_dir: AppDirOption = HERE) -> None:
    """Pause a queue: no worker starts its jobs until resume-queue.

    Jobs running now finish; new jobs are still accepted and wait.
    """

    async def pause(target: OperatorApp) -> None:
        try:
            await target.manager.pause_queue(queue)
        except InvalidJobOptionsError as exc:
            raise CliError(str(exc)) from None

    run_operation(app, app_dir, pause)
    typer.echo(f"paused queue {queue}")


def resume_queue(app: AppArgument, queue: QueueArgument, app_dir: AppDirOption = HERE) -> None:
    """Resume a paused queue: workers serving it start its jobs again."""

    async def resume(target: OperatorApp) -> None:
        try:
            await target.manager.resume_queue(queue)
        except InvalidJobOptionsError as exc:
            raise CliError(str(exc)) from None

    run_operation(app, app_dir, resume)
    typer.echo(f"resumed queue {queue}")
