"""``wait``: the final JobInfo of a job, on the memory and SQLite stores."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import (
    BackgroundJobManager,
    DefaultJobManager,
    JobManager,
    JobNotFoundError,
    JobRegistry,
    JobState,
    MasaApp,
    MemoryJobStore,
    Store,
    Worker,
)
from masa_jobs.stores.sqlite import SqliteJobStore

from .support import ALL_HANDLERS, Doomed, Greet, calls_of, fast_options, running

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0
LATER = timedelta(hours=1)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    opened: Any = (
        MemoryJobStore() if request.param == "memory" else SqliteJobStore(tmp_path / "jobs.db")
    )
    await opened.open()
    try:
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def manager(store: Store) -> DefaultJobManager:
    return DefaultJobManager(store, JobRegistry(ALL_HANDLERS), fast_options(max_retry_times=0))


def make_worker(store: Store) -> Worker:
    return Worker(store, JobRegistry(ALL_HANDLERS), fast_options(max_retry_times=0))


def test_wait_is_part_of_the_protocol_and_the_facade() -> None:
    assert inspect.iscoroutinefunction(JobManager.wait)
    assert inspect.iscoroutinefunction(DefaultJobManager.wait)
    assert inspect.iscoroutinefunction(BackgroundJobManager.wait)
    assert list(inspect.signature(DefaultJobManager.wait).parameters) == [
        "self",
        "job_id",
        "timeout",
    ]


async def test_wait_returns_the_job_once_it_succeeded(
    manager: DefaultJobManager, store: Store
) -> None:
    job_id = await manager.enqueue(Greet(key="ada"))

    async with running(make_worker(store)):
        info = await manager.wait(job_id, timeout=TIMEOUT)

    assert (info.id, info.state, info.attempts) == (job_id, JobState.SUCCEEDED, 1)
    assert info.args == {"key": "ada"}
    assert calls_of("greet") == ["ada"]


async def test_wait_returns_a_dead_job_with_its_error(
    manager: DefaultJobManager, store: Store
) -> None:
    job_id = await manager.enqueue(Doomed(key="x"))

    async with running(make_worker(store)):
        info = await manager.wait(job_id, timeout=timedelta(seconds=TIMEOUT))

    assert (info.state, info.attempts) == (JobState.DEAD, 1)
    assert info.last_error is not None
    assert "doomed x" in info.last_error


async def test_wait_returns_when_the_job_is_cancelled_meanwhile(
    manager: DefaultJobManager,
) -> None:
    job_id = await manager.enqueue(Greet(key="later"), delay=LATER)
    infos = []

    async def waiter() -> None:
        infos.append(await manager.wait(job_id, timeout=TIMEOUT))

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)  # let the waiter poll a few times first
            await manager.cancel(job_id)

    assert [info.state for info in infos] == [JobState.CANCELLED]


async def test_wait_returns_a_finished_job_at_once_even_with_no_time_left(
    manager: DefaultJobManager,
) -> None:
    job_id = await manager.enqueue(Greet(key="gone"), delay=LATER)
    await manager.cancel(job_id)

    info = await manager.wait(job_id, timeout=0)

    assert info.state is JobState.CANCELLED


@pytest.mark.parametrize("timeout", [0, 0.05, timedelta(milliseconds=50)])
async def test_wait_times_out_naming_the_job_and_its_state(
    manager: DefaultJobManager, timeout: float | timedelta
) -> None:
    job_id = await manager.enqueue(Greet(key="later"), delay=LATER)

    with anyio.fail_after(TIMEOUT), pytest.raises(TimeoutError) as caught:
        await manager.wait(job_id, timeout=timeout)

    message = str(caught.value)
    assert job_id in message
    assert "still scheduled" in message
    assert "check that a worker runs" in message
    info = await manager.get(job_id)
    assert info is not None
    assert info.state is JobState.SCHEDULED  # waiting changed nothing


async def test_waiting_for_an_unknown_id_is_job_not_found(manager: DefaultJobManager) -> None:
    with pytest.raises(JobNotFoundError, match="no job with id 'nope'"):
        await manager.wait("nope", timeout=TIMEOUT)


async def test_a_job_deleted_while_waited_for_is_job_not_found(
    manager: DefaultJobManager,
) -> None:
    job_id = await manager.enqueue(Greet(key="later"), delay=LATER)

    errors: list[Exception] = []

    async def waiter() -> None:
        try:
            await manager.wait(job_id)
        except JobNotFoundError as exc:
            errors.append(exc)

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)  # let the waiter poll a few times first
            await manager.delete(job_id)

    assert len(errors) == 1
    assert "deleted or purged while waited for" in str(errors[0])


@pytest.mark.parametrize(
    ("timeout", "error"),
    [(-1, ValueError), (float("nan"), ValueError), ("5", TypeError), (True, TypeError)],
)
async def test_a_bad_timeout_is_refused(
    manager: DefaultJobManager, timeout: Any, error: type[Exception]
) -> None:
    job_id = await manager.enqueue(Greet(key="later"), delay=LATER)

    with pytest.raises(error, match="timeout must be"):
        await manager.wait(job_id, timeout=timeout)


async def test_an_infinite_timeout_waits_as_long_as_it_takes(
    manager: DefaultJobManager, store: Store
) -> None:
    job_id = await manager.enqueue(Greet(key="inf"))

    with anyio.fail_after(TIMEOUT):
        async with running(make_worker(store)):
            info = await manager.wait(job_id, timeout=float("inf"))

    assert info.state is JobState.SUCCEEDED


async def test_the_facade_waits_on_the_root_container() -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"options": {"first_wait_duration": 0.01}})
    MasaApp.build(container)

    async with MasaApp.lifespan():
        job_id = await BackgroundJobManager.enqueue(Greet(key="facade"))
        info = await BackgroundJobManager.wait(job_id, timeout=TIMEOUT)

    assert info.state is JobState.SUCCEEDED
    assert calls_of("greet") == ["facade"]
