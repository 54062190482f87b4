"""``masa-jobs health APP``: does the queue of APP's store make progress?

Loads APP as ``masa-jobs worker`` does, opens its store (and runs no worker),
and asks ``masa_jobs.health.check_health``. Exit code 0 when healthy, 1 when
not (a store that cannot be opened included), 2 for a usage error (a bad APP
or configuration): an exec probe or a cron job can act on it.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import typer

from masa_jobs import MasaApp
from masa_jobs.health import HealthReport, check_health, store_unreachable

from ._common import (
    AppArgument,
    AppDirOption,
    Backend,
    first_line,
    masa_error_in,
    one_line_errors,
    run_async,
)
from ._operator import OperatorApp, load_operator_app
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
    with one_line_errors():
        target = load_operator_app(app, app_dir)
        try:
            report = run_async(partial(_check, target, max_due_age), Backend.ASYNCIO)
        finally:
            MasaApp.reset()
    _print(report, as_json)
    raise typer.Exit(0 if report.healthy else UNHEALTHY_EXIT_CODE)


async def _check(target: OperatorApp, max_due_age: float | None) -> HealthReport:
    """Open the store (no worker runs here), check, close it."""
    try:
        with anyio.fail_after(OPEN_TIMEOUT_SECONDS):
            await target.job_store.open()
    except TimeoutError:
        return store_unreachable(f"the store did not open within {OPEN_TIMEOUT_SECONDS:g} s")
    except Exception as exc:
        # The text may quote a connection string: redacted like every error.
        problem = first_line(str(masa_error_in(exc) or exc)) or type(exc).__name__
        return store_unreachable(f"cannot open the store: {target.options.redact_error(problem)}")
    try:
        return await check_health(target.manager, max_due_age=max_due_age)
    finally:
        with anyio.CancelScope(shield=True):
            await target.job_store.aclose()


def _print(report: HealthReport, as_json: bool) -> None:
    if as_json:
        print_json(report.to_dict())
        return
    typer.echo("healthy" if report.healthy else "UNHEALTHY")
    width = max(len(check.name) for check in report.checks)
    for check in report.checks:
        mark = "ok  " if check.ok else "FAIL"
        typer.echo(f"  {mark}  {check.name:<{width}}  {check.detail}")
