"""Job timeouts: a run longer than its timeout is cancelled and counts as a
failed attempt; the timeout comes from enqueue, then the args class, then the
``job_timeout`` option."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    DefaultJobManager,
    InvalidTimeoutError,
    JobRecord,
    JobRegistry,
    JobState,
    MemoryJobStore,
    Worker,
    job_options,
)
from masa_jobs._timeouts import TIMEOUT_HEADER, stored_timeout
from masa_jobs.records import decode_headers

from .support import fast_options, running, wait_for_record

pytestmark = pytest.mark.anyio

# Far beyond every timeout below: a run that is not cancelled never ends in a test.
FOREVER = 3600
CLEANED: list[str] = []


class Sleepy(BaseModel):
    key: str


class SleepyJob(BackgroundJob[Sleepy]):
    async def execute(self, args: Sleepy) -> None:
        try:
            await anyio.sleep(FOREVER)
        finally:
            # Clean-up in a finally block still runs when the run is cancelled.
            CLEANED.append(args.key)


@job_options(timeout=0.05)
class Brief(BaseModel):
    key: str


class BriefJob(BackgroundJob[Brief]):
    async def execute(self, args: Brief) -> None:
        await anyio.sleep(FOREVER)


HANDLERS = [SleepyJob, BriefJob]


def setup(**options: Any) -> tuple[MemoryJobStore, DefaultJobManager, Worker]:
    store = MemoryJobStore()
    registry = JobRegistry(HANDLERS)
    values = fast_options(**{"max_retry_times": 0, **options})
    return store, DefaultJobManager(store, registry, values), Worker(store, registry, values)


def finished(record: JobRecord) -> bool:
    return record.state.is_finished


async def test_the_option_cancels_a_run_that_lasts_too_long() -> None:
    store, manager, worker = setup(job_timeout=0.05)
    async with running(worker):
        job_id = await manager.enqueue(Sleepy(key="option"))
        record = await wait_for_record(store, job_id, finished)

    assert record.state is JobState.DEAD  # no retries: the one attempt failed
    assert record.last_error is not None
    assert "timed out after 0.05 s" in record.last_error
    assert "options.job_timeout" in record.last_error
    assert "option" in CLEANED


async def test_a_timed_out_attempt_follows_the_retry_policy() -> None:
    store, manager, worker = setup(job_timeout=0.05, max_retry_times=1, first_wait_duration=60)
    async with running(worker):
        job_id = await manager.enqueue(Sleepy(key="retry"))
        record = await wait_for_record(store, job_id, lambda r: r.last_error is not None)

    assert record.state is JobState.SCHEDULED
    assert record.attempts == 1
    assert record.last_try_at is not None
    assert record.next_try_at == record.last_try_at + timedelta(seconds=60)


async def test_the_args_class_sets_a_timeout() -> None:
    store, manager, worker = setup()
    async with running(worker):
        job_id = await manager.enqueue(Brief(key="class"))
        record = await wait_for_record(store, job_id, finished)

    assert record.state is JobState.DEAD
    assert "timed out after 0.05 s" in (record.last_error or "")


async def test_enqueue_overrides_the_class_and_the_option() -> None:
    store, manager, worker = setup(job_timeout=FOREVER)
    async with running(worker):
        job_id = await manager.enqueue(Sleepy(key="enqueue"), timeout=timedelta(milliseconds=40))
        record = await wait_for_record(store, job_id, finished)

    assert "timed out after 0.04 s" in (record.last_error or "")
    assert decode_headers(record.headers) == {TIMEOUT_HEADER: "0.04"}


async def test_a_job_within_its_timeout_succeeds() -> None:
    class Quick(BaseModel):
        n: int

    class QuickJob(BackgroundJob[Quick]):
        async def execute(self, args: Quick) -> None:
            return None

    store = MemoryJobStore()
    registry = JobRegistry([QuickJob])
    options = fast_options(job_timeout=30)
    manager = DefaultJobManager(store, registry, options)
    async with running(Worker(store, registry, options)):
        job_id = await manager.enqueue(Quick(n=1))
        record = await wait_for_record(store, job_id, finished)

    assert record.state is JobState.SUCCEEDED
    assert record.headers is None  # no timeout at enqueue: nothing stored


@pytest.mark.parametrize("bad", [0, -1, math.inf, math.nan, "30", True, timedelta(0)])
async def test_a_bad_timeout_is_refused_and_stores_nothing(bad: object) -> None:
    store, manager, _ = setup()

    with pytest.raises(InvalidTimeoutError, match="positive number of seconds"):
        await manager.enqueue(Sleepy(key="bad"), timeout=bad)  # type: ignore[arg-type]

    assert await store.count_by_state(await store.now()) == dict.fromkeys(JobState, 0)


def test_job_options_refuses_a_bad_timeout_and_a_non_model() -> None:
    with pytest.raises(InvalidTimeoutError):
        job_options(timeout=-5)
    with pytest.raises(TypeError, match="pydantic model"):
        job_options(timeout=5)(SleepyJob)


def test_a_damaged_stored_timeout_falls_back() -> None:
    assert stored_timeout('{"masa-timeout": "soon"}') is None
    assert stored_timeout('{"masa-timeout": "-1"}') is None
    assert stored_timeout("not json") is None
    assert stored_timeout(None) is None
    assert stored_timeout('{"masa-timeout": "2.5"}') == 2.5


def test_the_class_timeout_is_not_inherited() -> None:
    from masa_jobs.jobs import get_job_timeout

    class Longer(Brief):
        pass

    assert get_job_timeout(Brief) == 0.05
    assert get_job_timeout(Longer) is None
