"""Cancelling a running job where no notice reaches the worker (a SQLite
worker in another process): the worker stops the handler at its next lease
renewal; the job ends cancelled and is not retried. With a notice, see
test_job_control.py."""

from __future__ import annotations

from collections.abc import Callable
from uuid import uuid4

import anyio
import pytest
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    DefaultJobManager,
    InvalidJobStateError,
    JobRegistry,
    JobState,
    MemoryJobStore,
    Worker,
)

from .support import fast_options, running, wait_for_record, wait_until

pytestmark = pytest.mark.anyio

FOREVER = 3600
STARTED: list[str] = []
CLEANED: list[str] = []


class Endless(BaseModel):
    key: str


class EndlessJob(BackgroundJob[Endless]):
    async def execute(self, args: Endless) -> None:
        STARTED.append(args.key)
        try:
            await anyio.sleep(FOREVER)
        finally:
            CLEANED.append(args.key)


class DeafStore(MemoryJobStore):
    """A store whose cancel notices never reach this worker."""

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        return None


def setup() -> tuple[MemoryJobStore, DefaultJobManager, Worker]:
    store = DeafStore()
    registry = JobRegistry([EndlessJob])
    # Leases renewed every 0.1 s: a cancel reaches the run within that.
    options = fast_options(lease_timeout=0.3)
    return store, DefaultJobManager(store, registry, options), Worker(store, registry, options)


async def test_cancelling_a_running_job_stops_its_handler() -> None:
    store, manager, worker = setup()
    key, then = uuid4().hex, uuid4().hex
    async with running(worker):
        job_id = await manager.enqueue(Endless(key=key))
        await wait_until(lambda: key in STARTED)

        info = await manager.cancel(job_id)
        await wait_until(lambda: key in CLEANED)
        await wait_until(lambda: worker.leases_lost >= 1)
        record = await wait_for_record(store, job_id, lambda r: r.state.is_finished)
        # The worker is free again: it runs the next job.
        second = await manager.enqueue(Endless(key=then))
        await wait_until(lambda: then in STARTED)
        await manager.cancel(second)

    assert info.state is JobState.CANCELLED
    assert record.state is JobState.CANCELLED
    assert record.attempts == 1
    assert [e.state for e in record.history] == [JobState.CANCELLED]


async def test_a_finished_job_cannot_be_cancelled() -> None:
    _, manager, worker = setup()
    key = uuid4().hex
    async with running(worker):
        job_id = await manager.enqueue(Endless(key=key))
        await wait_until(lambda: key in STARTED)
        await manager.cancel(job_id)

    with pytest.raises(InvalidJobStateError, match="is cancelled"):
        await manager.cancel(job_id)
