"""The SQLite store with a running worker: what the unit tests and the fleet tests leave out.

In-process tests run a worker through ``MasaApp.lifespan()`` on asyncio and
on trio (SQLite supports both); a second ``SqliteJobStore`` on the same file,
or a plain ``sqlite3`` connection, stands for another process. Tests with
real worker processes run on asyncio only.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import (
    BackgroundJobOptions,
    DefaultJobManager,
    JobManager,
    JobRegistry,
    JobState,
    MasaApp,
)
from masa_jobs.exceptions import StoreUnavailableError
from masa_jobs.records import utcnow
from masa_jobs.stores.sqlite import SqliteJobStore

from .app import RECORD_FILE_VARIABLE, Work, WorkJob
from .both_backends import anyio_backend  # noqa: F401 (asyncio and trio)
from .conftest import StoreUnderTest
from .harness import WorkerFleet, observer, read_records, wait_until

pytestmark = pytest.mark.anyio

# Guards against a hang; far above what any step should take, even under load.
HANG_GUARD_SECONDS = 20.0
# A worker's own poll interval, set so long that only a wake-up or the
# store's cross-process poll (at most a second) can end its wait.
NO_POLL_SECONDS = 60.0


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


@pytest.fixture
def record_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the integration app's handler records each execution, in this process."""
    path = tmp_path / "records.txt"
    monkeypatch.setenv(RECORD_FILE_VARIABLE, str(path))
    return path


@asynccontextmanager
async def running_app(
    database: Path, store: dict[str, Any] | None = None, **options: Any
) -> AsyncIterator[BackgroundJobContainer]:
    """A container with a worker on the SQLite file, running in this process."""
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {"backend": "sqlite", "path": str(database), **(store or {})},
            "options": {"poll_interval": 0.5, "max_retry_times": 0, **options},
        }
    )
    MasaApp.build(container)
    async with MasaApp.lifespan():
        yield container


@asynccontextmanager
async def other_process(database: Path) -> AsyncIterator[DefaultJobManager]:
    """A manager on its own connection to the file: to the worker, another process."""
    store = SqliteJobStore(database)
    await store.open()
    try:
        yield DefaultJobManager(store, JobRegistry([WorkJob]), BackgroundJobOptions())
    finally:
        await store.aclose()


@contextmanager
def raw_sqlite(database: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection in autocommit mode, as a foreign writer would use."""
    with closing(sqlite3.connect(database, timeout=10, isolation_level=None)) as connection:
        yield connection


def now_us() -> int:
    """Now as the store keeps times: integer microseconds since the epoch, UTC."""
    return time.time_ns() // 1000


async def succeeded(manager: JobManager, job_id: str) -> bool:
    info = await manager.get(job_id)
    return info is not None and info.state is JobState.SUCCEEDED


# -- a corrupt record ------------------------------------------------------------------


def corrupt_an_enqueued_job(database: Path, job_id: str) -> str:
    """Break the payload of a job the manager stored, and make it due now."""
    with raw_sqlite(database) as connection:
        changed = connection.execute(
            "UPDATE masa_jobs SET payload = ?, next_try_at = ? WHERE id = ?",
            ('{"key": "bro', now_us(), job_id),
        ).rowcount
    assert changed == 1
    return job_id


def insert_a_corrupt_row(database: Path) -> str:
    """A whole job row written by hand, with a payload that is not JSON."""
    job_id = uuid4().hex
    now = now_us()
    with raw_sqlite(database) as connection:
        connection.execute(
            "INSERT INTO masa_jobs (id, name, payload, state, created_at, next_try_at, "
            "attempts, done_handlers) VALUES (?, 'integration-work', ?, 'enqueued', ?, ?, 0, '[]')",
            (job_id, "{not json at all", now, now),
        )
    return job_id


@pytest.mark.parametrize("how", ["updated", "inserted"])
async def test_a_corrupt_payload_ends_dead_and_the_worker_carries_on(
    database: Path, record_file: Path, how: str
) -> None:
    async with running_app(database) as container:
        manager = MasaApp.job_manager()
        if how == "updated":
            victim = await manager.enqueue(Work(key="victim"), delay=3600)
            corrupt_id = corrupt_an_enqueued_job(database, victim)
        else:
            corrupt_id = insert_a_corrupt_row(database)
        good = await manager.enqueue_many((Work(key=f"good-{i}"), None) for i in range(5))

        async def settled() -> bool:
            infos = [await manager.get(job_id) for job_id in [corrupt_id, *good]]
            return all(info is not None and info.state.is_finished for info in infos)

        await wait_until(settled, timeout=HANG_GUARD_SECONDS)
        dead = await manager.get(corrupt_id)
        assert dead is not None
        assert dead.state is JobState.DEAD
        assert dead.attempts == 1
        assert dead.last_error is not None
        assert "the stored args of job 'integration-work' no longer validate" in dead.last_error
        assert "json" in dead.last_error.lower()
        for job_id in good:
            assert await succeeded(manager, job_id)

        # The worker still serves: a job enqueued afterwards succeeds too.
        later = await manager.enqueue(Work(key="later"))
        await wait_until(lambda: succeeded(manager, later), timeout=HANG_GUARD_SECONDS)
        assert container.worker().running

    done = read_records(record_file)
    assert done == {**{f"good-{i}": 1 for i in range(5)}, "later": 1}


@pytest.mark.parametrize(
    ("column", "value"),
    [("done_handlers", "[broken"), ("attempts", "many"), ("created_at", "yesterday")],
)
async def test_a_damaged_column_ends_that_job_dead_without_wedging_claims(
    database: Path, record_file: Path, column: str, value: str
) -> None:
    async with running_app(database):
        manager = MasaApp.job_manager()
        victim = await manager.enqueue(Work(key="victim"), delay=3600)
        with raw_sqlite(database) as connection:
            # The column name comes from the parametrisation above, not from input.
            connection.execute(
                f"UPDATE masa_jobs SET {column} = ?, next_try_at = ? WHERE id = ?",
                (value, now_us(), victim),
            )
        good = await manager.enqueue_many((Work(key=f"good-{i}"), None) for i in range(5))

        async def good_ones_succeeded() -> bool:
            return all([await succeeded(manager, job_id) for job_id in good])

        await wait_until(good_ones_succeeded, timeout=HANG_GUARD_SECONDS)
        with raw_sqlite(database) as connection:
            state, error = connection.execute(
                "SELECT state, last_error FROM masa_jobs WHERE id = ?", (victim,)
            ).fetchone()
        assert state == "dead"
        assert f"the stored record of job {victim!r} cannot be read" in error
    assert read_records(record_file) == {f"good-{i}": 1 for i in range(5)}


# -- a file that cannot be opened --------------------------------------------------------


async def test_lifespan_on_a_missing_directory_fails_at_once_naming_the_path(
    tmp_path: Path,
) -> None:
    path = tmp_path / "missing" / "jobs.sqlite3"
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "sqlite", "path": str(path)}})
    MasaApp.build(container)  # nothing touches the file before lifespan()

    started = time.monotonic()
    with anyio.fail_after(5), pytest.raises(StoreUnavailableError) as caught:
        async with MasaApp.lifespan():
            pytest.fail("lifespan() started on a store that cannot be opened")

    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert str(path) in message
    assert "does not exist" in message
    assert "store.path" in message
    assert not path.parent.exists()
    assert not container.worker().running


# -- wake-up -------------------------------------------------------------------------------


async def test_an_idle_worker_gets_new_jobs_at_once_here_and_within_a_poll_from_elsewhere(
    database: Path, record_file: Path
) -> None:
    async def picked_up(key: str) -> bool:
        return read_records(record_file)[key] == 1

    async with (
        running_app(database, poll_interval=NO_POLL_SECONDS),
        other_process(database) as elsewhere,
    ):
        manager = MasaApp.job_manager()
        await anyio.sleep(0.3)  # the worker is idle, waiting

        started = anyio.current_time()
        await manager.enqueue(Work(key="here"))
        await wait_until(lambda: picked_up("here"), timeout=HANG_GUARD_SECONDS, interval=0.005)
        here = anyio.current_time() - started

        await anyio.sleep(0.3)
        started = anyio.current_time()
        await elsewhere.enqueue(Work(key="elsewhere"))
        await wait_until(lambda: picked_up("elsewhere"), timeout=HANG_GUARD_SECONDS, interval=0.01)
        from_elsewhere = anyio.current_time() - started

    # This process's enqueue sets the worker's wake-up event; another process's
    # is seen by the store's poll, at least once a second whatever poll_interval says.
    assert here < 0.5
    assert from_elsewhere < 1.0 + 1.0  # one poll, plus slack for a busy machine


# -- leases --------------------------------------------------------------------------------


async def test_a_job_running_longer_than_its_lease_keeps_it(
    database: Path, record_file: Path
) -> None:
    lease_timeout = 1.5
    async with (
        running_app(database, lease_timeout=lease_timeout),
        other_process(database) as elsewhere,
    ):
        manager = MasaApp.job_manager()
        job_id = await manager.enqueue(Work(key="long", sleep=2.5 * lease_timeout))
        await wait_until(
            lambda: _recorded(record_file, "start", "long"), timeout=HANG_GUARD_SECONDS
        )
        intruder = elsewhere.store
        # Another worker keeps trying to claim while the job outlives its first lease.
        while not await succeeded(manager, job_id):
            stolen = await intruder.claim("intruder", 10, timedelta(seconds=60))
            assert stolen == [], "the job was claimed while its worker still ran it"
            await anyio.sleep(0.1)

        info = await manager.get(job_id)
        assert info is not None
        assert info.attempts == 1
    assert read_records(record_file)["long"] == 1


async def _recorded(record_file: Path, event: str, key: str) -> bool:
    return read_records(record_file, event)[key] > 0


# -- a lock held elsewhere (SQLite's "connection loss") -------------------------------------


async def test_a_write_lock_held_elsewhere_stalls_the_worker_but_loses_no_job(
    database: Path, record_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="masa_jobs.worker")
    jobs = 6
    async with running_app(database, store={"busy_timeout": 0.1}, concurrency=2, poll_interval=0.2):
        manager = MasaApp.job_manager()
        job_ids = await manager.enqueue_many(
            (Work(key=f"job-{i}", sleep=0.3), None) for i in range(jobs)
        )
        with raw_sqlite(database) as other:
            # Another process takes the write lock and keeps it: every claim
            # and every outcome the worker tries to write fails meanwhile.
            other.execute("BEGIN IMMEDIATE")
            try:
                await anyio.sleep(1.5)  # the outage itself, not a wait for a condition
            finally:
                other.execute("ROLLBACK")

        async def all_succeeded() -> bool:
            return all([await succeeded(manager, job_id) for job_id in job_ids])

        await wait_until(all_succeeded, timeout=HANG_GUARD_SECONDS)
        counts = await manager.count()

    assert counts[JobState.SUCCEEDED] == jobs
    assert read_records(record_file) == {f"job-{i}": 1 for i in range(jobs)}
    failures = [r for r in caplog.records if r.name == "masa_jobs.worker"]
    assert failures, "the worker should log the store errors it backed off from"
    assert any("locked" in r.getMessage() for r in failures)


# -- graceful shutdown of a real worker process ----------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stopped_worker_process_puts_its_running_job_back_due_at_once(
    database: Path, tmp_path: Path
) -> None:
    store = StoreUnderTest("sqlite", {"path": str(database)})
    record_file = tmp_path / "process-records.txt"
    fleet = WorkerFleet(store.env(), record_file)
    async with observer(store) as manager:
        job_id = await manager.enqueue(Work(key="interrupted", sleep=60))
        # A long lease: only the release on shutdown can make the job due soon.
        fleet.start(1, lease_timeout=60, shutdown_timeout=0.2, poll_interval=0.5)
        try:
            await wait_until(lambda: _recorded(record_file, "start", "interrupted"), timeout=60)
            assert len(await manager.workers()) == 1
        finally:
            codes = fleet.stop_all()
        assert codes == [0], fleet.logs()
        assert "interrupted by shutdown" in fleet.logs()

        info = await manager.get(job_id)
        assert info is not None
        assert info.state is JobState.ENQUEUED
        assert info.attempts == 1, "the interrupted attempt counts"
        assert await manager.workers() == [], "the stopped worker removed its heartbeat"
    async with other_process(database) as elsewhere:
        record = await elsewhere.store.get(job_id)
    assert record is not None
    assert record.lease_owner is None
    assert record.lease_expires_at is None
    assert record.next_try_at <= utcnow()
    assert read_records(record_file)["interrupted"] == 0
