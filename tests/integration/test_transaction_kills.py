"""A handler's effect and its job's completion commit together, across SIGKILL.

``EffectJob`` (tests/integration/app.py) inserts an effect row and calls
``complete_in`` in one transaction on the store's database, in a real
``masa-jobs worker`` process that SIGKILLs itself on one side of the commit:

- after the commit, the job is ``succeeded`` and never runs again, although
  the worker died holding its lease;
- before the commit, neither the effect nor the completion is there, and
  another worker runs the job again, once: one effect in the end.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import asyncpg
import pytest

from masa_jobs import JobInfo, JobManager, JobState

from .app import EFFECTS_TABLE, Effect, Kill, Work
from .conftest import StoreUnderTest
from .harness import WorkerFleet, exit_code, observer, read_records, wait_until

pytestmark = pytest.mark.anyio

# Short, so that a killed worker's job would be claimable again within seconds.
LEASE_TIMEOUT = 2.0
# Worker start-up (imports, store open) plus one claim, with room for a slow machine.
WORKER_READY_TIMEOUT = 60.0
WORKER_OPTIONS = {"lease_timeout": LEASE_TIMEOUT, "poll_interval": 0.5}


async def test_a_kill_right_after_the_commit_never_runs_the_job_again(
    transactional_store: StoreUnderTest, tmp_path: Path
) -> None:
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(transactional_store.env(), record_file)
    async with observer(transactional_store) as manager:
        await create_effects(transactional_store)
        job_id = await manager.enqueue(Effect(key="once", kill=Kill.AFTER_COMMIT))
        (victim,) = fleet.start(1, **WORKER_OPTIONS)
        try:
            code = await exit_code(victim, WORKER_READY_TIMEOUT)
            assert code == -signal.SIGKILL, fleet.logs()
            # The victim's last lease renewal was before its death: by this
            # deadline its lease has lapsed, on the store's clock too (one machine).
            lease_lapsed_at = time.monotonic() + LEASE_TIMEOUT
            info = await job(manager, job_id)
            assert (info.state, info.attempts) == (JobState.SUCCEEDED, 1)
            assert await effects(transactional_store, "once") == 1
            fleet.start(1, **WORKER_OPTIONS)
            await anyio.sleep(max(0.0, lease_lapsed_at - time.monotonic()))  # the deadline itself
            # A worker claims due jobs in claim order (priority, due time, attempts,
            # then enqueue order), a lapsed lease's job among them at its old due
            # time. Were the killed job still claimable, the claim that takes this
            # later probe would take it too, or an earlier claim would: once the
            # probe succeeded, the job would show a second attempt.
            probe_id = await manager.enqueue(Work(key="probe"))
            await wait_until(lambda: _succeeded(manager, probe_id), timeout=WORKER_READY_TIMEOUT)
            info = await job(manager, job_id)
            assert (info.state, info.attempts) == (JobState.SUCCEEDED, 1), fleet.logs()
        finally:
            codes = fleet.stop_all()
        assert codes == [-signal.SIGKILL, 0], fleet.logs()
    # Every worker has ended: the record file is complete.
    assert read_records(record_file, "start")["once"] == 1
    assert read_records(record_file, "done")["once"] == 0, "it died before returning"
    assert await effects(transactional_store, "once") == 1


async def test_a_kill_right_before_the_commit_runs_the_job_again_once(
    transactional_store: StoreUnderTest, tmp_path: Path
) -> None:
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(transactional_store.env(), record_file)
    async with observer(transactional_store) as manager:
        await create_effects(transactional_store)
        job_id = await manager.enqueue(Effect(key="again", kill=Kill.BEFORE_COMMIT))
        (victim,) = fleet.start(1, **WORKER_OPTIONS)
        try:
            code = await exit_code(victim, WORKER_READY_TIMEOUT)
            assert code == -signal.SIGKILL, fleet.logs()
            # Neither the effect nor the completion committed: the job is still
            # held by the dead worker's lease.
            info = await job(manager, job_id)
            assert (info.state, info.attempts) == (JobState.PROCESSING, 1)
            assert await effects(transactional_store, "again") == 0
            fleet.start(1, **WORKER_OPTIONS)
            await wait_until(
                lambda: _succeeded(manager, job_id),
                timeout=LEASE_TIMEOUT + WORKER_READY_TIMEOUT,
            )
        finally:
            codes = fleet.stop_all()
        assert codes == [-signal.SIGKILL, 0], fleet.logs()
        info = await job(manager, job_id)
        assert info.attempts == 2, "the killed attempt and the completed one"
    assert read_records(record_file, "start")["again"] == 2
    assert read_records(record_file, "done")["again"] == 1
    assert await effects(transactional_store, "again") == 1


async def job(manager: JobManager, job_id: str) -> JobInfo:
    info = await manager.get(job_id)
    assert info is not None, f"job {job_id} is gone"
    return info


async def _succeeded(manager: JobManager, job_id: str) -> bool:
    return (await job(manager, job_id)).state is JobState.SUCCEEDED


async def create_effects(store: StoreUnderTest) -> None:
    """The effects table, beside the store's tables (which exist once it opened)."""
    columns = "(key text NOT NULL, pid integer NOT NULL)"
    if store.backend == "postgres":
        connection = await asyncpg.connect(store.settings["dsn"])
        try:
            await connection.execute(
                f'CREATE TABLE "{store.settings["schema"]}".{EFFECTS_TABLE} {columns}'
            )
        finally:
            await connection.close()
    else:
        with _sqlite(store) as connection:
            connection.execute(f"CREATE TABLE {EFFECTS_TABLE} {columns}")


async def effects(store: StoreUnderTest, key: str) -> int:
    """How many effect rows ``key`` has, as committed."""
    if store.backend == "postgres":
        connection = await asyncpg.connect(store.settings["dsn"])
        try:
            table = f'"{store.settings["schema"]}".{EFFECTS_TABLE}'
            count: int = await connection.fetchval(
                f"SELECT count(*) FROM {table} WHERE key = $1", key
            )
        finally:
            await connection.close()
        return count
    with _sqlite(store) as connection:
        (count,) = connection.execute(
            f"SELECT count(*) FROM {EFFECTS_TABLE} WHERE key = ?", (key,)
        ).fetchone()
    return int(count)


@contextmanager
def _sqlite(store: StoreUnderTest) -> Iterator[sqlite3.Connection]:
    """A short-lived connection to the store's file: committed on success, closed."""
    connection = sqlite3.connect(store.settings["path"])
    try:
        with connection:
            yield connection
    finally:
        connection.close()
