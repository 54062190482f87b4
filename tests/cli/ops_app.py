"""A small application for the operator-command tests (run in a subprocess only).

Never import it from a test module: its handler and recurring job would be
registered in the test process and show up in every other test's registry.
The tests choose the store with MASA_JOBS_STORE__... variables, as an
operator would.

Its worker and scheduler fail as soon as they are run, so a command that
started them would fail the test that runs it.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.abc import TaskStatus
from dependency_injector import providers
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobOptions, BackgroundScheduleJob, job_name


@job_name("ops.ping")
class Ping(BaseModel):
    text: str


class PingJob(BackgroundJob[Ping]):
    async def execute(self, args: Ping) -> None:
        """Nothing to do: no worker runs in these tests."""


class Nightly(BackgroundScheduleJob):
    id = "nightly"
    cron_expression = "0 3 * * *"

    async def execute(self) -> None:
        """Nothing to do: the tests only list and trigger it."""


class RefusesToRun:
    """Stands in for the worker and the scheduler: operator commands must not run them."""

    def __init__(self, **parts: Any) -> None:
        self.worker_id = "refuses-to-run"

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        raise RuntimeError("an operator command ran a worker or a scheduler")

    def stop(self) -> None:
        pass


class AppContainer(BackgroundJobContainer):
    # Stand-ins, not Worker and Scheduler subclasses: the provider types differ.
    worker = providers.Singleton(RefusesToRun)  # type: ignore[arg-type]
    scheduler = providers.Singleton(RefusesToRun)  # type: ignore[arg-type]


class FixedOptionsContainer(AppContainer):
    """Options that ignore config: disable_background_job stays false unless overridden."""

    options = providers.Singleton(BackgroundJobOptions, poll_interval=1)


container = AppContainer()
fixed_options = FixedOptionsContainer()
