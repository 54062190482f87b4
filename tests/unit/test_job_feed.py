"""The hand-off of claimed jobs from the claim loop to the consumers."""

from __future__ import annotations

from datetime import timedelta

import anyio
import anyio.lowlevel
import pytest

from masa_jobs import JobRecord, JobState
from masa_jobs._job_feed import JobFeed
from masa_jobs.records import utcnow

pytestmark = pytest.mark.anyio

# Generous bound for steps that take microseconds: a hang fails, never waits forever.
STEP_TIMEOUT = 5.0


def _job(number: int) -> JobRecord:
    now = utcnow()
    return JobRecord(
        id=f"job-{number}",
        name="Greet",
        payload="{}",
        state=JobState.PROCESSING,
        created_at=now,
        next_try_at=now - timedelta(seconds=number),
    )


async def test_jobs_come_out_in_the_order_they_went_in() -> None:
    feed = JobFeed()
    for number in range(3):
        feed.put(_job(number))
    assert len(feed) == 3
    got = [await feed.get() for _ in range(3)]
    assert [job.id for job in got if job is not None] == ["job-0", "job-1", "job-2"]


async def test_a_closed_feed_is_drained_then_says_none() -> None:
    feed = JobFeed()
    feed.put(_job(0))
    feed.close()
    first = await feed.get()
    assert first is not None
    assert first.id == "job-0"
    assert await feed.get() is None


async def test_waiting_consumers_each_get_one_job_and_end_at_close() -> None:
    feed = JobFeed()
    got: list[str] = []
    ended = 0

    async def consume() -> None:
        nonlocal ended
        while (job := await feed.get()) is not None:
            got.append(job.id)
            await anyio.lowlevel.checkpoint()
        ended += 1

    with anyio.fail_after(STEP_TIMEOUT):
        async with anyio.create_task_group() as consumers:
            for _ in range(4):
                consumers.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            for number in range(10):
                feed.put(_job(number))
            await anyio.wait_all_tasks_blocked()
            feed.close()
    assert sorted(got) == sorted(f"job-{n}" for n in range(10))
    assert ended == 4


async def test_a_cancelled_waiter_passes_its_wake_up_on() -> None:
    """A consumer cancelled just as a job arrived for it must not strand the
    job while another consumer waits."""
    feed = JobFeed()
    got: list[str] = []

    async def consume() -> None:
        job = await feed.get()
        if job is not None:
            got.append(job.id)

    with anyio.fail_after(STEP_TIMEOUT):
        async with anyio.create_task_group() as consumers:
            with anyio.CancelScope() as doomed:
                async with anyio.create_task_group() as first:
                    first.start_soon(consume)
                    await anyio.wait_all_tasks_blocked()
                    consumers.start_soon(consume)
                    await anyio.wait_all_tasks_blocked()
                    # The first waiter is cancelled, and its wake-up set
                    # before it runs again.
                    doomed.cancel()
                    feed.put(_job(0))
            await anyio.wait_all_tasks_blocked()
            assert got == ["job-0"]
            feed.close()
    assert len(feed) == 0


async def test_a_cancelled_waiter_leaves_the_idle_list() -> None:
    feed = JobFeed()
    with anyio.move_on_after(0):
        await feed.get()
    got: list[str] = []

    async def consume() -> None:
        job = await feed.get()
        assert job is not None
        got.append(job.id)

    with anyio.fail_after(STEP_TIMEOUT):
        async with anyio.create_task_group() as consumers:
            consumers.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            feed.put(_job(0))
    assert got == ["job-0"]
