"""One operation on jobs given by id (``retry``, ``cancel``, ``delete``): look, ask, act.

Each id is acted on once, in order. An id that is unknown or in a state the
operation does not apply to gets an ``error:`` line on stderr, the others are
still acted on, and the exit code is then 1.

With ``dry_run`` the jobs are only looked up: a line per job says what would be
done, with the same errors as a real run. When asking, the jobs are looked up
first as well, and the question names them (id, name, state).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import typer

from masa_jobs import InvalidJobStateError, JobInfo, JobManager, JobNotFoundError, JobState

from ._common import stderr_console
from ._confirm import confirmed
from ._escape import printable
from ._operator import OperatorApp, run_operation

__all__ = ["JobAction", "act_on_each", "describe"]

# Exit code when some of the given ids were not acted on (the others were).
SOME_FAILED_EXIT_CODE = 1


@dataclass(frozen=True, slots=True)
class JobAction:
    """What an operation is called, which states it applies to, and how it is done."""

    verb: str  # "delete": "Delete job ...?", "would delete ..."
    past: str  # "deleted": "nothing deleted", "only a job that is dead can be retried"
    states: frozenset[JobState]
    run: Callable[[JobManager, str], Awaitable[str]]  # does it; the line to print


def describe(info: JobInfo) -> str:
    """``id (name, state)``, safe to print whatever the store holds."""
    return f"{printable(info.id)} ({printable(info.name)}, {info.state.value})"


def act_on_each(
    app: str,
    app_dir: Path,
    job_ids: list[str],
    action: JobAction,
    *,
    ask: bool,
    dry_run: bool,
) -> None:
    """Run ``action`` on each id (after a question when ``ask``); exit 1 if any was not."""

    async def each(target: OperatorApp) -> int:
        manager = target.manager
        ids = list(dict.fromkeys(job_ids))
        if not (ask or dry_run):
            return await _run(manager, ids, action)
        infos, refused = await _look_up(manager, ids, action)
        if dry_run:
            for info in infos:
                typer.echo(f"would {action.verb} {describe(info)}")
            return refused
        if infos and not confirmed(_question(action, infos)):
            typer.echo(f"nothing {action.past}")
            return refused + len(infos)
        return refused + await _run(manager, [info.id for info in infos], action)

    if run_operation(app, app_dir, each):
        raise typer.Exit(SOME_FAILED_EXIT_CODE)


async def _run(manager: JobManager, job_ids: list[str], action: JobAction) -> int:
    refused = 0
    for job_id in job_ids:
        try:
            done = await action.run(manager, job_id)
        except (JobNotFoundError, InvalidJobStateError) as exc:
            _error(str(exc))
            refused += 1
        else:
            typer.echo(done)
    return refused


async def _look_up(
    manager: JobManager, job_ids: list[str], action: JobAction
) -> tuple[list[JobInfo], int]:
    """The jobs ``action`` applies to, and how many ids were refused (with the
    manager's own messages, so that a dry run reads like the real one)."""
    infos: list[JobInfo] = []
    for job_id in job_ids:
        info = await manager.get(job_id)
        if info is None:
            _error(f"no job with id {job_id!r}; list jobs to find its id")
        elif info.state not in action.states:
            _error(
                f"job {job_id!r} is {info.state.value}; only a job that is "
                f"{_either(action.states)} can be {action.past}"
            )
        else:
            infos.append(info)
    return infos, len(job_ids) - len(infos)


def _question(action: JobAction, infos: list[JobInfo]) -> str:
    verb = action.verb.capitalize()
    if len(infos) == 1:
        return f"{verb} job {describe(infos[0])}?"
    for info in infos:
        stderr_console().print(f"  {describe(info)}", markup=False)
    return f"{verb} these {len(infos)} jobs?"


def _either(states: Collection[JobState]) -> str:
    return " or ".join(sorted(state.value for state in states))


def _error(message: str) -> None:
    stderr_console().print(f"error: {message}", markup=False)
