"""``masa-jobs health APP``: does the queue of APP's store make progress?

Loads APP as ``masa-jobs worker`` does, opens its store (and runs no worker),
and asks ``masa_jobs.health.check_health``. Exit code 0 when healthy, 1 when
not (a store that cannot be opened included), 2 for a usage error (a bad APP
or configuration): an exec probe or a cron job can act on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import typer

from masa_jobs import BackgroundJobOptions, JobManager, MasaApp
from masa_jobs.health import HealthReport, check_health, store_unreachable
from masa_jobs.stores.base import JobStore

from ._app_loader import load_container
from ._app_setup import build_app, jobs_container, store_name
from ._common import (
    AppArgument,
    AppDirOption,
    Backend,
    CliError,
    fail,
    masa_error_in,
    run_async,
    stderr_console,
)
from ._ops_view import JsonOption, print_json

__all__ = ["health"]

UNHEALTHY_EXIT_CODE = 1
# Opening a store that does not answer is given this long, so that a probe
# ends before Kubernetes' own timeout would count it as failed anyway.
OPEN_TIMEOUT_SECONDS = 10.0

MaxDueAgeOption = Annotated[
    float | None,
    typer.Option(
        min=0.001,
        help="Seconds the job due first may wait; overrides options.health_max_due_age.",
        show_default=False,
    ),
]


def health(
    app: AppArgument,
    as_json: JsonOption = False,
    max_due_age: MaxDueAgeOption = None,
    app_dir: AppDirOption = Path("."),
) -> None:
    """Check that jobs make progress: the store answers, a worker is live, the
    job due first has not waited too long, and no job is held past its lease.

    Exit code 0 when healthy, 1 when not, 2 for a usage error.
    """
    try:
        target = _load(app, app_dir)
        try:
            report = run_async(partial(_check, target, max_due_age), Backend.ASYNCIO)
        finally:
            MasaApp.reset()
    except CliError as exc:
        fail(str(exc))
    except Exception as exc:
        problem = masa_error_in(exc)
        if problem is None:
            raise
        fail(str(problem))
    _print(report, as_json)
    raise typer.Exit(0 if report.healthy else UNHEALTHY_EXIT_CODE)


@dataclass(frozen=True, slots=True)
class _Target:
    manager: JobManager
    store: JobStore
    options: BackgroundJobOptions


def _load(spec: str, app_dir: Path) -> _Target:
    container = load_container(spec, app_dir)
    jobs = jobs_container(container)
    build_app(container)
    if store_name(jobs) == "memory":
        stderr_console().print(
            "warning: the memory store keeps jobs inside the process that runs them, so this "
            "command sees an empty store with no worker; set store.backend "
            "(MASA_JOBS_STORE__BACKEND) to sqlite, postgres or redis, as for your workers",
            markup=False,
        )
    return _Target(jobs.job_manager(), jobs.job_store(), jobs.options())


async def _check(target: _Target, max_due_age: float | None) -> HealthReport:
    """Open the store (no worker runs here), check, close it."""
    try:
        with anyio.fail_after(OPEN_TIMEOUT_SECONDS):
            await target.store.open()
    except TimeoutError:
        return store_unreachable(f"the store did not open within {OPEN_TIMEOUT_SECONDS:g} s")
    except Exception as exc:
        # The text may quote a connection string: redacted like every error.
        problem = _first_line(masa_error_in(exc) or exc)
        return store_unreachable(f"cannot open the store: {target.options.redact_error(problem)}")
    try:
        return await check_health(target.manager, max_due_age=max_due_age)
    finally:
        with anyio.CancelScope(shield=True):
            await target.store.aclose()


def _print(report: HealthReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    typer.echo("healthy" if report.healthy else "UNHEALTHY")
    width = max(len(check.name) for check in report.checks)
    for check in report.checks:
        mark = "ok  " if check.ok else "FAIL"
        typer.echo(f"  {mark}  {check.name:<{width}}  {check.detail}")


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
